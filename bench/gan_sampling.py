"""Can sampling alone lift a trained GAN's scores? Truncated noise and discriminator ranking, and where IS is lost.

    python bench/gan_sampling.py --run runs/gan[,runs/gan_seed1,...] [--split validation] [--out bench/gan_sampling.json]

For each trained run (its EMA generator, as `gan eval` uses), with the classifier FID / Inception-style score of
`aigc_tf.metrics.image_quality.sample_quality` on `--split` (seed 0; "validation" by default, 500 samples: this is
a choice, and choices never read the test split):
- the recipe's own truncation (`GANConfig.truncation`, `models.TruncatedNoise`) at several thresholds t: each noise
  value is mapped onto the normal truncated to [-t, t], except the one that picks the cluster;
- discriminator ranking (after Azadi et al. 2019's rejection sampling), with `--ranking`: draw 1/keep times the
  samples, keep the `keep` share D scores as most real;
- the Inception-style score split into its two entropies, log IS ~ H(p(y)) - E_x H(p(y|x)): class balance against
  per-sample confidence, for the generated and the real digits.
With several runs (training seeds) the file also holds each row's mean and min-max over the runs, which is what the
truncation choice reads. Writes one JSON file; every number in bench/DECISIONS.md's sampling rows comes from it.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def entropies(probabilities) -> dict:
    import numpy as np

    marginal = probabilities.mean(0)
    return {"class_entropy": float(-(marginal * np.log(marginal + 1e-12)).sum()),
            "mean_sample_entropy": float(-(probabilities * np.log(probabilities + 1e-12)).sum(1).mean()),
            "share_below_0.9_confidence": float((probabilities.max(1) < 0.9).mean())}


THRESHOLDS = (2.5, 2.0, 1.5, 1.0)


def sampling_rows(run: Path, split: str, ranking: bool) -> dict:
    """One run's rows: plain noise, the recipe's truncation at each threshold, and optionally D's ranking."""
    import numpy as np

    from aigc_tf.gan.sample import draw, load_generator
    from aigc_tf.metrics.classifier import load_classifier
    from aigc_tf.metrics.image_quality import real_halves, sample_quality

    def measure(name, generate_fn):
        report = sample_quality(generate_fn, config.dataset, config.source, seed=0, verbose=0, split=split)
        row = {"sampling": name, "fid": report["fid"], "inception_score": report["inception_score"]}
        print(f"{run.name:18s} {name:24s} FID {row['fid']:6.2f}  IS {row['inception_score']:.3f}", flush=True)
        return row, report

    rows = []
    for threshold in (0.0, *THRESHOLDS):
        generator, config, step = load_generator(run, truncation=threshold)
        name = f"truncated at {threshold}" if threshold else "plain N(0, I)"
        row, report = measure(name, lambda n, g=generator, c=config: draw(g, c, n, seed=0)[0])
        rows.append(row)
        if not threshold:
            reference, plain_generator, plain_config = report, generator, config
    if ranking:
        from aigc_tf.robustness.discriminator import load_gan_networks, realness

        gan = load_gan_networks(run)

        def ranked(n, keep):
            candidates = draw(plain_generator, plain_config, int(n / keep), seed=0)[0]
            scores = realness(gan, candidates)
            return candidates[np.argsort(-np.asarray(scores))[:n]]

        for keep in (0.5, 0.25):
            rows.append(measure(f"D keeps the best {keep:.0%}", lambda n, k=keep: ranked(n, k))[0])

    classifier = load_classifier(plain_config.dataset, plain_config.source, verbose=0)
    real, _, _ = real_halves(plain_config.dataset, plain_config.source, seed=0, split=split)
    _, generated_probs = classifier.features_and_probabilities(draw(plain_generator, plain_config, len(real), 0)[0])
    _, real_probs = classifier.features_and_probabilities(real)
    return {"run": str(run), "step": step, "real_fid_floor": reference["real_fid_floor"],
            "real_inception_score": reference["real_inception_score"], "rows": rows,
            "entropies": {"generated": entropies(generated_probs), "real": entropies(real_probs)}}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run", default="runs/gan", help="one run folder, or several comma-separated (seeds)")
    parser.add_argument("--split", default="validation", choices=("validation", "test"))
    parser.add_argument("--ranking", action="store_true", help="also rank samples by the run's discriminator")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "gan_sampling.json")
    args = parser.parse_args()

    import statistics

    import tensorflow as tf

    # A run already measured at the same step and split (an earlier call, e.g. while the next seed trained) is reused.
    earlier = json.loads(args.out.read_text()) if args.out.exists() else {}
    done = {r["run"]: r for r in earlier.get("runs", []) if earlier.get("split") == args.split}
    runs = []
    for run in (Path(r) for r in args.run.split(",") if r):
        step = int(tf.train.latest_checkpoint(str(run / "checkpoints")).rsplit("-", 1)[1])
        reuse = done.get(str(run))
        reusable = reuse and reuse["step"] == step and (not args.ranking or len(reuse["rows"]) > 1 + len(THRESHOLDS))
        runs.append(reuse if reusable else sampling_rows(run, args.split, args.ranking))
    spread = {}
    for i, row in enumerate(runs[0]["rows"]):
        for metric in ("fid", "inception_score"):
            values = [run["rows"][i][metric] for run in runs]
            spread.setdefault(row["sampling"], {})[metric] = {
                "mean": statistics.fmean(values), "min": min(values), "max": max(values)}
    spread["real_fid_floor"] = statistics.fmean(run["real_fid_floor"] for run in runs)
    spread["real_inception_score"] = statistics.fmean(run["real_inception_score"] for run in runs)
    result = {"split": args.split, "runs": runs, "over_runs": spread,
              "machine_flags": sorted({f for f in ("avx2", "avx512_bf16") if f in Path("/proc/cpuinfo").read_text()}),
              "tensorflow": tf.__version__}
    for name, metrics in spread.items():
        if isinstance(metrics, dict):
            print(f"mean over {len(runs)} runs, {name:24s} FID {metrics['fid']['mean']:6.2f} "
                  f"[{metrics['fid']['min']:.2f}, {metrics['fid']['max']:.2f}]  IS {metrics['inception_score']['mean']:.3f}"
                  f" [{metrics['inception_score']['min']:.3f}, {metrics['inception_score']['max']:.3f}]")
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
