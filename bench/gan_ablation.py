"""The GAN recipe's ablation: the default recipe, then the same budget with one ingredient taken out (or put in).

    python bench/gan_ablation.py [--steps N] [--seeds 0,1,2] [--rows recipe,-augment,...] [--split validation]
                                 [--out bench/gan_ablation]

Every row trains `aigc_tf.gan.train.train_gan` on the default config with one change, for the default budget (the
config's epochs) unless `--steps` says otherwise, then measures it with `aigc_tf.gan.evaluate.evaluate_gan` (the
project's classifier FID and Inception-style score, seed 0) on `--split`: "validation" by default (500 samples), as
an ablation is a choice; `bench/gan_seeds.py` reports the chosen recipe on test. The recipe row is trained once per
seed in `--seeds`, which gives the spread; the ablation rows use the first seed. Results go to `<out>/results.json`
(with the machine's CPU flags), a Markdown table `<out>/table.md` and one 8x8 sample grid per row
`<out>/<row>.png` (the same noise for every row), from the EMA generator where the row keeps one.

Runs live in `bench/.cache/gan_ablation/<row>-seed<k>`; a finished row is not trained again (delete its folder to
redo it), so an interrupted ablation resumes where it stopped. Steps/s is the median over the row's epochs of the
training loop's own timing; it includes the per-epoch checkpoint and grid, and drifts with the VM's load: compare
rows within one ablation only.
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

# Each row changes the recipe in one way: "-x" takes an ingredient out, "+x" puts one in that the recipe leaves out
# (so a measured loser still has its row). A row appears only where the change alters the recipe.
CHANGES = {
    "-clusters": ("no k-means clusters: G draws from plain noise, D judges images alone", {"condition": "none"}),
    "+truncation": ("samples from noise truncated at 2 (the recipe's run; the default until issue 27's rerun)",
                    {"truncation": 2.0}),
    "-ema": ("no EMA generator", {"ema_decay": 0.0}),
    "-fast-start": ("a constant learning rate (no fast start)", {"fast_start": 1.0}),
    "-r1": ("no R1 penalty", {"r1_gamma": 0.0}),
    "+r1": ("with the R1 penalty (gamma 2) on every step", {"r1_gamma": 2.0}),
    "-spectral-norm": ("no spectral norm in D", {"spectral_norm": False}),
    "-hinge": ("non-saturating loss instead of hinge", {"loss": "non_saturating"}),
    "+dropout": ("D with dropout 0.3 and label smoothing 0.1 (the classic D)", {"dropout": 0.3,
                                                                               "label_smoothing": 0.1}),
    "-augment": ("no DiffAugment", {"augment": ""}),
    "+augment": ("with DiffAugment (translation, cutout, color)", {"augment": "translation,cutout,color"}),
    "+augment-color": ("with DiffAugment (color only)", {"augment": "color"}),
}
# The MLP GAN before any of these ingredients (Goodfellow et al. with Radford et al.'s Adam): the old default.
CLASSIC = {"augment": "", "ema_decay": 0.0, "r1_gamma": 0.0, "r1_interval": 1, "condition": "none", "truncation": 0.0,
           "loss": "non_saturating", "label_smoothing": 0.1,
           "dropout": 0.3, "spectral_norm": False, "learning_rate": 2e-4, "beta_1": 0.5, "beta_2": 0.999,
           "d_learning_rate_ratio": 1.0, "batch_size": 64, "fast_start": 1.0}


# Changes of sampling alone: the row scores the recipe's own run (same seed) with the change, instead of training.
SAMPLING_ONLY = {"truncation"}


def default_rows(recipe) -> list[str]:
    """The recipe, each change that alters it, and the classic recipe."""
    rows = ["recipe"]
    for row, (_, change) in CHANGES.items():
        if any(getattr(recipe, field) != value for field, value in change.items()):
            rows.append(row)
    return rows + ["classic"]


def row_config(recipe, row: str, seed: int):
    if row == "recipe":
        return recipe.replace(seed=seed), "the default recipe"
    if row == "classic":
        return recipe.replace(seed=seed, **CLASSIC), "the classic MLP GAN (none of the above)"
    label, change = CHANGES[row]
    return recipe.replace(seed=seed, **change), label


def run_row(config, run_dir: Path, steps: int | None, split: str) -> dict:
    """Train (or find trained) and evaluate one row; returns its measurements."""
    from aigc_tf.gan.evaluate import EVAL_FILE, evaluate_gan
    from aigc_tf.gan.train import train_gan
    from aigc_tf.runs import RunFolder

    eval_path = run_dir / EVAL_FILE
    started = time.perf_counter()
    result = train_gan(config, run_dir, steps=steps, verbose=False)
    trained_seconds = time.perf_counter() - started
    stored = json.loads(eval_path.read_text()) if eval_path.exists() else {}
    if stored.get("step") == result.step and stored.get("split", "test") == split:
        report = stored
    else:
        report = evaluate_gan(run_dir, seed=0, verbose=0, split=split)
    rates = [float(row["steps_per_s"]) for row in RunFolder(run_dir).read_history()]
    return {"step": result.step, "fid": report["fid"], "inception_score": report["inception_score"],
            "real_fid_floor": report["real_fid_floor"], "real_inception_score": report["real_inception_score"],
            "steps_per_s": statistics.median(rates) if rates else None,
            "seconds_this_call": round(trained_seconds, 1), "class_histogram": report["class_histogram"]}


def rescore_row(recipe, config, run_dir: Path, steps: int | None, split: str) -> dict:
    """A sampling-only row: the recipe's run (trained here if it is not yet), scored with the row's sampling."""
    from aigc_tf.gan.sample import draw, load_generator
    from aigc_tf.metrics.image_quality import sample_quality

    recipe_row = run_row(recipe, run_dir, steps, split)
    generator, built, step = load_generator(run_dir, truncation=config.truncation)
    report = sample_quality(lambda n: draw(generator, built, n, seed=0)[0], built.dataset, built.source, seed=0,
                            verbose=0, split=split)
    return {**recipe_row, "step": step, "fid": report["fid"], "inception_score": report["inception_score"],
            "class_histogram": report["class_histogram"], "seconds_this_call": 0.0}


def table(results: dict) -> str:
    rows = results["rows"]
    floor = next(iter(rows.values()))["seeds"][0]["real_fid_floor"]
    lines = [f"| row | change | FID (x floor {floor:.1f}) | Inception-style score | steps/s | grid |",
             "|---|---|---|---|---|---|"]
    for name, row in rows.items():
        seeds = row["seeds"]
        fids = [s["fid"] for s in seeds]
        scores = [s["inception_score"] for s in seeds]
        spread = lambda xs, fmt: (fmt.format(xs[0]) if len(xs) == 1  # noqa: E731
                                  else f"{fmt.format(statistics.median(xs))} ({fmt.format(min(xs))}-"
                                       f"{fmt.format(max(xs))}, {len(xs)} seeds)")
        fid_text = f"{spread(fids, '{:.1f}')} ({statistics.median(fids) / floor:.1f}x)"
        rate = statistics.median(s["steps_per_s"] for s in seeds)
        lines.append(f"| {name} | {row['change']} | {fid_text} | {spread(scores, '{:.2f}')} | {rate:.0f} | "
                     f"[{name}.png]({name}.png) |")
    real_is = next(iter(rows.values()))["seeds"][0]["real_inception_score"]
    lines.append(f"| real {results.get('split', 'test')} digits | | {floor:.1f} (floor) | {real_is:.2f} | | |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, help="steps per row (default: the default config's epochs)")
    parser.add_argument("--seeds", default="0,1,2", help="seeds of the recipe row; the others use the first "
                                                         "(default: %(default)s)")
    parser.add_argument("--rows", help="comma-separated subset of: recipe, classic, " + ", ".join(CHANGES))
    parser.add_argument("--split", default="validation", choices=("validation", "test"),
                        help="the real digits the rows are scored against (default: %(default)s; choices never read "
                             "the test split)")
    parser.add_argument("--out", type=Path, default=BENCH / "gan_ablation", help="default: bench/gan_ablation")
    parser.add_argument("--cache", type=Path, default=BENCH / ".cache" / "gan_ablation",
                        help="run folders (default: bench/.cache/gan_ablation)")
    args = parser.parse_args(argv)

    from aigc_tf import hardware, plots
    from aigc_tf.config import GANConfig
    from aigc_tf.gan.sample import draw, load_generator

    recipe = GANConfig()
    rows = args.rows.split(",") if args.rows else default_rows(recipe)
    seeds = [int(s) for s in args.seeds.split(",")]
    args.out.mkdir(parents=True, exist_ok=True)
    results = {"command": "python bench/gan_ablation.py " + " ".join(argv if argv is not None else sys.argv[1:]),
               "cpu": hardware.describe(), "steps": args.steps, "split": args.split,
               "recipe": json.loads(_to_json(recipe)), "rows": {}}
    for row in rows:
        row_seeds = seeds if row == "recipe" else seeds[:1]
        entry = {"change": None, "seeds": []}
        for seed in row_seeds:
            config, entry["change"] = row_config(recipe, row, seed)
            sampling_only = row in CHANGES and set(CHANGES[row][1]) <= SAMPLING_ONLY  # not "recipe" or "classic"
            run_dir = args.cache / f"{'recipe' if sampling_only else row}-seed{seed}"
            print(f"{row} (seed {seed}): {entry['change']} -> {run_dir}", flush=True)
            if sampling_only:
                measured = rescore_row(recipe.replace(seed=seed), config, run_dir, args.steps, args.split)
            else:
                measured = run_row(config, run_dir, args.steps, args.split)
            print(f"  FID {measured['fid']:.1f}, IS {measured['inception_score']:.2f}, "
                  f"{measured['steps_per_s']:.0f} steps/s", flush=True)
            entry["seeds"].append({"seed": seed, **measured})
            if seed == row_seeds[0]:
                generator, stored, _ = load_generator(run_dir, truncation=config.truncation)
                images, _ = draw(generator, stored, 64, seed=0)
                plots.save_grid(images, args.out / f"{row}.png")
        results["rows"][row] = entry
        (args.out / "results.json").write_text(json.dumps(results, indent=2))
    (args.out / "table.md").write_text(table(results) + "\n")
    print(table(results))
    print(f"wrote {args.out / 'results.json'}, {args.out / 'table.md'} and one grid per row in {args.out}")
    return 0


def _to_json(config) -> str:
    from aigc_tf.config import to_json

    return to_json(config)


if __name__ == "__main__":
    sys.exit(main())
