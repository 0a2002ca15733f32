"""Why was a short run of the default GAN noise, and which default change fixes it without costing the full run?

    python bench/gan_short_run.py [--steps 1500] [--variants default,clusters-0,...] [--seed 0] [--out ...json]

Every variant trains `aigc_tf.gan.train.train_gan` on the default config with a few fields changed, for `--steps`
steps (`--seed`, 0 by default), one variant at a time, then scores four generators of the same run on the validation
split (`sample_quality(..., split="validation")`, seed 0, 500 samples): the EMA generator with the recipe's truncation
(what `gan eval` reports), the EMA generator on plain noise, and the live generator with and without truncation.
The four tell the suspects apart: if the live generator is as bad as the averaged one, the EMA and its BatchNorm
calibration are not the cause; if plain noise is as bad as truncated, truncation is not.

The target (issue 26): the reported FID within 10x of the real-data floor at 1,500 steps. Runs live in
`bench/.cache/gan_short_run/<variant>-<steps>`; a finished variant is not trained again (delete its folder to redo
it). Results merge into the JSON file, so variants can be run in several calls (and seeds in parallel); `seeds` in
the file holds each variant's mean, min and max FID over the floor across the seeds run.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
BENCH = Path(__file__).resolve().parent

# Each variant names the suspect it tests; the values are GANConfig fields changed from the default.
VARIANTS = {
    "default": ("the default recipe", {}),
    "constant-rate": ("the default before the fast start: 2e-4 throughout", {"fast_start": 1.0}),
    "clusters-0": ("no k-means clusters: is the 50-way conditioning slow to learn?", {"clusters": 0}),
    "clusters-10": ("10 clusters instead of 50", {"clusters": 10}),
    "dropout-0.3": ("D with dropout 0.3 (the classic D): does an unchecked D stall G early?", {"dropout": 0.3}),
    "lr-3e-4": ("both learning rates 1.5x", {"learning_rate": 3e-4}),
    "lr-4e-4": ("both learning rates doubled", {"learning_rate": 4e-4}),
    "lr-5e-4": ("both learning rates 2.5x", {"learning_rate": 5e-4}),
    "lr-1e-3": ("both learning rates 5x", {"learning_rate": 1e-3}),
    "fast-start-2": ("2e-4, doubled for the first 2,000 steps then eased back (the cosine runs of bench/DECISIONS.md "
                     "came from commit 006b04e)", {"fast_start": 2.0, "fast_start_steps": 2000}),
    "lr-4e-4-d-0.5": ("4e-4 for G, 2e-4 for D", {"learning_rate": 4e-4, "d_learning_rate_ratio": 0.5}),
    "lr-4e-4-beta1-0": ("4e-4, Adam beta_1 0", {"learning_rate": 4e-4, "beta_1": 0.0}),
    "lr-4e-4-ema-0.99": ("4e-4, EMA decay 0.99", {"learning_rate": 4e-4, "ema_decay": 0.99}),
    "lr-4e-4-dropout-0.3": ("4e-4, D dropout 0.3", {"learning_rate": 4e-4, "dropout": 0.3}),
    "lr-4e-4-d-2": ("4e-4 for G, 8e-4 for D (TTUR)", {"learning_rate": 4e-4, "d_learning_rate_ratio": 2.0}),
    "lr-4e-4-beta2-0.99": ("4e-4, Adam beta_2 0.99", {"learning_rate": 4e-4, "beta_2": 0.99}),
    "lr-4e-4-hinge": ("4e-4, the hinge loss", {"learning_rate": 4e-4, "loss": "hinge"}),
    "lr-4e-4-batch-128": ("4e-4, batch 128: twice the digits a step", {"learning_rate": 4e-4, "batch_size": 128}),
    "d-lr-0.5": ("D's learning rate halved (TTUR the other way)", {"d_learning_rate_ratio": 0.5}),
    "beta1-0.0": ("Adam beta_1 0", {"beta_1": 0.0}),
    "ema-0.99": ("EMA decay 0.99", {"ema_decay": 0.99}),
    "batch-32": ("batch 32: twice the updates per epoch", {"batch_size": 32}),
}


def score(run: Path) -> dict:
    """The run scored four ways on the validation split (see the module docstring)."""
    from aigc_tf.gan.sample import draw, load_generator
    from aigc_tf.metrics.image_quality import sample_quality

    rows = {}
    for name, averaged, truncation in (("ema_truncated", True, None), ("ema_plain", True, 0.0),
                                       ("live_truncated", False, None), ("live_plain", False, 0.0)):
        generator, config, step = load_generator(run, averaged=averaged, truncation=truncation)
        quality = sample_quality(lambda n: draw(generator, config, n, seed=0)[0], config.dataset, config.source,
                                 seed=0, verbose=0, split="validation")
        rows[name] = {"fid": round(quality["fid"], 2), "inception_score": round(quality["inception_score"], 3)}
        rows["real_fid_floor"] = round(quality["real_fid_floor"], 3)
        rows["real_inception_score"] = round(quality["real_inception_score"], 3)
    rows["fid_over_floor"] = round(rows["ema_truncated"]["fid"] / rows["real_fid_floor"], 2)
    return rows


def seed_spread(runs: dict) -> dict:
    """Per variant and step count run on several seeds: the mean, min and max of its FID over the floor, as the run
    samples (`fid_over_floor`) and on plain noise (`plain`: the default since truncation became an option)."""
    by_variant = {}
    for key, row in runs.items():
        by_variant.setdefault(re.sub(r"-seed\d+$", "", key), []).append(row)

    def spread(values: list[float]) -> dict:
        return {"mean": round(statistics.fmean(values), 2), "min": round(min(values), 2), "max": round(max(values), 2)}

    return {name: {"seeds": sorted(row["seed"] for row in rows), **spread([row["fid_over_floor"] for row in rows]),
                   "plain": spread([row["ema_plain"]["fid"] / row["real_fid_floor"] for row in rows])}
            for name, rows in by_variant.items() if len(rows) > 1}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=BENCH / "gan_short_run.json")
    args = parser.parse_args()

    from aigc_tf.config import GANConfig
    from aigc_tf.gan.train import train_gan

    for name in args.variants.split(","):
        why, changes = VARIANTS[name]
        key = f"{name}-{args.steps}" + (f"-seed{args.seed}" if args.seed else "")
        run = BENCH / ".cache" / "gan_short_run" / key
        began = time.perf_counter()
        if not (run / "history.csv").exists() or len((run / "history.csv").read_text().splitlines()) < 2:
            config = GANConfig(seed=args.seed).replace(**changes)
            train_gan(config, run, steps=args.steps, verbose=False)
        seconds = time.perf_counter() - began
        row = {"why": why, "changes": changes, "steps": args.steps, "seed": args.seed, **score(run)}
        if seconds > 5:
            row["train_seconds"] = round(seconds, 1)
        results = json.loads(args.out.read_text()) if args.out.exists() else {"runs": {}}  # with other calls' rows
        results["runs"][key] = row
        results["seeds"] = seed_spread(results["runs"])
        print(f"{key:28s} FID {row['ema_truncated']['fid']:8.1f} ({row['fid_over_floor']:5.1f}x floor "
              f"{row['real_fid_floor']:.1f})  plain {row['ema_plain']['fid']:8.1f}  live {row['live_plain']['fid']:8.1f}"
              f"  IS {row['ema_truncated']['inception_score']:.2f}", flush=True)
        args.out.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
