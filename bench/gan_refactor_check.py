"""Does the GAN still score the same after a refactor? The default recipe for three seeds, scored like the ablation.

    python bench/gan_refactor_check.py --label after [--seeds 0,1,2] [--runs /work/runs_shared]
        [--out bench/gan_refactor_check.json] [--steps N]

Trains `GANConfig(seed=k)` (the default recipe, its full budget unless `--steps`) into `<runs>/<label>_seed<k>` with
`aigc_tf.gan.train.train_gan`, scores it with `aigc_tf.gan.evaluate.evaluate_gan` (the classifier FID and
Inception-style score of `aigc-tf gan eval`, seed 0), and writes per seed FID, IS, any held-out judge FID the
report carries and the median steps/s of the run's epochs, plus the mean and min-max over seeds, under
`<label>` in `--out` (other labels already there are kept, so "before" and "after" sit side by side).

The script uses only `train_gan(config, run_dir, verbose=...)`, `evaluate_gan` and `RunFolder.read_history`, so it
runs on the code before a refactor too: put that checkout first on PYTHONPATH. A finished run is not trained again
(its eval.json is reused when it scores the same step). Steps/s drifts with the machine's load (two cores shared
with other jobs): compare scores across labels, and speed only within one quiet session.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
BENCH = Path(__file__).resolve().parent


def run_seed(config, run_dir: Path, steps: int | None) -> dict:
    """Train (or find trained) and evaluate one seed; returns its measurements."""
    import aigc_tf
    from aigc_tf.gan.evaluate import EVAL_FILE, evaluate_gan
    from aigc_tf.gan.train import train_gan
    from aigc_tf.runs import RunFolder

    started = time.perf_counter()
    result = train_gan(config, run_dir, steps=steps, verbose=False)
    seconds = time.perf_counter() - started
    eval_path = run_dir / EVAL_FILE
    if eval_path.exists() and json.loads(eval_path.read_text()).get("step") == result.step:
        report = json.loads(eval_path.read_text())
    else:
        report = evaluate_gan(run_dir, seed=0, verbose=0)
    rates = [float(row["steps_per_s"]) for row in RunFolder(run_dir).read_history() if row.get("steps_per_s")]
    judge = {key: value for key, value in report.items() if "judge" in key}  # held-out judge scores, if any
    return {"seed": config.seed, "step": result.step, "fid": report["fid"],
            "inception_score": report["inception_score"], "real_fid_floor": report["real_fid_floor"],
            **judge, "steps_per_s": statistics.median(rates) if rates else None,
            "seconds_this_call": round(seconds, 1), "code": str(Path(aigc_tf.__file__).parent.parent)}


def summary(seeds: list[dict]) -> dict:
    """Mean and [min, max] of every numeric score over the seeds."""
    keys = [k for k, v in seeds[0].items() if isinstance(v, float) and k not in ("seconds_this_call",)]
    return {key: {"mean": statistics.fmean(s[key] for s in seeds),
                  "min_max": [min(s[key] for s in seeds), max(s[key] for s in seeds)]}
            for key in keys if all(isinstance(s.get(key), float) for s in seeds)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--label", required=True, help="before / after: the run folders' prefix and the JSON key")
    parser.add_argument("--seeds", default="0,1,2", help="default: %(default)s")
    parser.add_argument("--steps", type=int, help="steps per seed (default: the recipe's epochs)")
    parser.add_argument("--runs", type=Path, default=Path("/work/runs_shared"), help="default: %(default)s")
    parser.add_argument("--out", type=Path, default=BENCH / "gan_refactor_check.json", help="default: %(default)s")
    args = parser.parse_args(argv)

    from aigc_tf.config import GANConfig

    results = json.loads(args.out.read_text()) if args.out.exists() else {}
    entry = {"command": "python bench/gan_refactor_check.py " + " ".join(argv if argv is not None else sys.argv[1:]),
             "steps": args.steps, "seeds": []}
    for seed in (int(s) for s in args.seeds.split(",")):
        run_dir = args.runs / f"{args.label}_seed{seed}"
        print(f"{args.label} seed {seed} -> {run_dir}", flush=True)
        measured = run_seed(GANConfig(seed=seed), run_dir, args.steps)
        print(f"  FID {measured['fid']:.2f}, IS {measured['inception_score']:.3f}, "
              f"{measured['steps_per_s']:.1f} steps/s", flush=True)
        entry["seeds"].append(measured)
        entry["summary"] = summary(entry["seeds"])
        results[args.label] = entry
        # Re-read before writing: another label may have finished meanwhile (before and after can run in turn).
        on_disk = json.loads(args.out.read_text()) if args.out.exists() else {}
        args.out.write_text(json.dumps({**on_disk, args.label: entry}, indent=2) + "\n")
    print(json.dumps(entry["summary"], indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
