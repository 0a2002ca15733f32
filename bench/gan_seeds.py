"""A GAN's reported quality (the default, or the conditional GAN): mean and spread over training seeds and
sampling noise, on the test split.

    python bench/gan_seeds.py --runs /work/runs_shared/recipe_seed0,... [--eval-seeds 0,1,2] [--out bench/gan_seeds.json]
    python bench/gan_seeds.py --train 0,1,2 [--steps N] [--condition digit]   # trains in bench/.cache/gan_seeds/
    python bench/gan_seeds.py --runs runs/cgan0,runs/cgan1,runs/cgan2 --out bench/cgan_seeds.json   # the cGAN

Each run folder (one per training seed) is scored with `aigc_tf.gan.evaluate.evaluate_gan(run, seed=s,
split="test")` for every eval seed `s`, which draws both the generator's noise and the random halves of the test
split that the scores compare with: the spread then holds the training seed, the sampling noise and the reference
sample. This is the one place the test split is read for the GAN recipe; every choice was made on validation
(bench/DECISIONS.md). The README's quality table comes from the `summary` here: the mean and the min-max over all
(training seed, eval seed) pairs, never the best seed. `evaluate_gan` also writes each run's `eval.json`, which
afterwards holds the last eval seed's report.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
BENCH = Path(__file__).resolve().parent
METRICS = ("fid", "real_fid_floor", "inception_score", "real_inception_score")
OPTIONAL = ("label_accuracy", "elbo")  # a digit-conditioned GAN: the asked digit drawn; a VAE (vae_seeds.py): its ELBO


def spread(values: list[float]) -> dict:
    """Mean, min and max of a list of numbers (the README states the mean, the range beside it)."""
    return {"mean": round(statistics.fmean(values), 3), "min": round(min(values), 3), "max": round(max(values), 3),
            "n": len(values)}


def stored_config(run: Path) -> dict:
    config = json.loads((run / "config.json").read_text())
    return config.get("config", config)


def metrics_of(rows: list[dict]) -> tuple[str, ...]:
    return METRICS + tuple(name for name in OPTIONAL if all(name in row for row in rows))


def summarize(rows: list[dict]) -> dict:
    """Spread of each metric over all rows, of FID over its floor, and of the untruncated FID where there is one."""
    summary = {name: spread([row[name] for row in rows]) for name in metrics_of(rows)}
    summary["fid_over_floor"] = spread([row["fid"] / row["real_fid_floor"] for row in rows])
    plain = [row for row in rows if "without_truncation" in row]
    if plain:
        summary["without_truncation"] = {
            **{name: spread([row["without_truncation"][name] for row in plain]) for name in ("fid", "inception_score")},
            "fid_over_floor": spread([row["without_truncation"]["fid"] / row["real_fid_floor"] for row in plain])}
    return summary


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", default="", help="comma-separated run folders, one per training seed")
    parser.add_argument("--train", default="", help="comma-separated training seeds to train first (default config)")
    parser.add_argument("--steps", type=int, default=None, help="with --train: steps instead of the config's epochs")
    parser.add_argument("--condition", default=None,
                        help="with --train: none, digit or cluster (default: the config's)")
    parser.add_argument("--eval-seeds", default="0,1,2")
    parser.add_argument("--out", type=Path, default=BENCH / "gan_seeds.json")
    args = parser.parse_args()

    from aigc_tf.gan.evaluate import evaluate_gan

    runs = [Path(r) for r in args.runs.split(",") if r]
    if args.train:
        from aigc_tf.config import GANConfig
        from aigc_tf.gan.train import train_gan

        config = GANConfig() if args.condition is None else GANConfig(condition=args.condition)
        for seed in (int(s) for s in args.train.split(",")):
            run = BENCH / ".cache" / "gan_seeds" / f"{config.condition}-seed{seed}"
            if not (run / "checkpoints").exists():
                train_gan(config.replace(seed=seed), run, steps=args.steps, verbose=False)
            runs.append(run)
    if not runs:
        parser.error("give --runs or --train")
    eval_seeds = [int(s) for s in args.eval_seeds.split(",")]

    # Rows already measured at the same step (an earlier call, e.g. while the next seed trained) are reused.
    earlier = json.loads(args.out.read_text())["rows"] if args.out.exists() else []
    done = {(r["run"], r["eval_seed"], r["step"]): r for r in earlier}
    rows = []
    for run in runs:
        config = stored_config(run)
        latest = max(int(p.stem.split("-")[1]) for p in (run / "checkpoints").glob("ckpt-*.index"))
        for eval_seed in eval_seeds:
            if (str(run), eval_seed, latest) in done:
                rows.append(done[(str(run), eval_seed, latest)])
                continue
            report = evaluate_gan(run, seed=eval_seed, verbose=0, split="test")
            row = {"run": str(run), "train_seed": config.get("seed"), "eval_seed": eval_seed, "step": report["step"],
                   "truncation": report["truncation"], "split": "test", "num_samples": report["num_samples"],
                   **{name: round(report[name], 3) for name in METRICS + OPTIONAL if name in report}}
            if "without_truncation" in report:
                row["without_truncation"] = {k: round(v, 3) for k, v in report["without_truncation"].items()}
            rows.append(row)
            print(f"{run.name:18s} eval seed {eval_seed}: FID {row['fid']:6.2f} (floor {row['real_fid_floor']:.2f})"
                  f"  IS {row['inception_score']:.3f} (real {row['real_inception_score']:.3f})", flush=True)

    conditions = sorted({stored_config(run).get("condition", "?") for run in runs})
    per_seed = {}
    for row in rows:
        per_seed.setdefault(str(row["train_seed"]), []).append(row)
    result = {
        "what": f"GAN runs (condition {', '.join(conditions)}), test split, evaluate_gan per (training seed, eval "
                "seed)",
        "eval_seeds": eval_seeds,
        "summary": summarize(rows),
        "per_training_seed": {seed: {name: spread([r[name] for r in group])["mean"] for name in metrics_of(rows)}
                              for seed, group in per_seed.items()},
        "rows": rows,
    }
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    s = result["summary"]
    print(f"mean FID {s['fid']['mean']:.2f} [{s['fid']['min']:.2f}, {s['fid']['max']:.2f}], floor "
          f"{s['real_fid_floor']['mean']:.2f}; IS {s['inception_score']['mean']:.3f} "
          f"[{s['inception_score']['min']:.3f}, {s['inception_score']['max']:.3f}] -> {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
