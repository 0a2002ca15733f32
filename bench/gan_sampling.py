"""Can sampling alone lift a trained GAN's scores? Truncated noise and discriminator ranking, and where IS is lost.

    python bench/gan_sampling.py --run runs/gan [--out bench/gan_sampling.json]

For one trained run (its EMA generator, as `gan eval` uses), with the classifier FID / Inception-style score of
`aigc_tf.metrics.image_quality.sample_quality` (seed 0, 982 samples):
- truncation (Brock et al. 2019, BigGAN): each noise entry with |z| > t is drawn again, for several t (on a run
  with clusters this also redraws the value that picks the cluster, which the recipe's own `truncation` spares);
- discriminator ranking (after Azadi et al. 2019's rejection sampling): draw 1/keep times the samples, keep the
  `keep` share D scores as most real;
- the Inception-style score split into its two entropies, log IS ~ H(p(y)) - E_x H(p(y|x)): class balance against
  per-sample confidence, for the generated and the real test digits.
Writes one JSON file; every number in bench/DECISIONS.md's sampling rows comes from it.
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run", type=Path, default=Path("runs/gan"))
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "gan_sampling.json")
    args = parser.parse_args()

    import numpy as np
    import tensorflow as tf

    from aigc_tf.gan.sample import generate, load_generator
    from aigc_tf.metrics.classifier import load_classifier
    from aigc_tf.metrics.image_quality import real_halves, sample_quality
    from aigc_tf.robustness.discriminator import load_gan_networks, realness

    gan = load_gan_networks(args.run)
    # The run's own sampling truncation (GANConfig.truncation) stays out: every row below chooses its own noise.
    gan.generator, _, _ = load_generator(args.run, truncation=0.0)
    config = gan.config

    def images(noise):
        return np.concatenate([generate(gan.generator, noise[i:i + 500]) for i in range(0, len(noise), 500)])

    def truncated(n, threshold):
        z = np.random.default_rng(0).standard_normal((n, config.latent_dim))
        redraw = np.random.default_rng(1)
        while threshold and (far := np.abs(z) > threshold).any():
            z[far] = redraw.standard_normal(int(far.sum()))
        return z.astype(np.float32)

    def ranked(n, keep):
        candidates = images(truncated(int(n / keep), None))
        scores = realness(gan, candidates)
        return candidates[np.argsort(-np.asarray(scores))[:n]]

    def measure(name, generate_fn):
        report = sample_quality(generate_fn, config.dataset, config.source, seed=0, verbose=0)
        row = {"sampling": name, "fid": report["fid"], "inception_score": report["inception_score"]}
        print(f"{name:28s} FID {row['fid']:6.1f}  IS {row['inception_score']:.2f}", flush=True)
        return row, report

    rows, (plain, reference) = [], measure("plain N(0, I)", lambda n: images(truncated(n, None)))
    rows.append(plain)
    for threshold in (2.5, 2.0, 1.5, 1.0):
        rows.append(measure(f"truncated at {threshold}", lambda n, t=threshold: images(truncated(n, t)))[0])
    for keep in (0.5, 0.25):
        rows.append(measure(f"D keeps the best {keep:.0%}", lambda n, k=keep: ranked(n, k))[0])

    classifier = load_classifier(config.dataset, config.source, verbose=0)
    real, _, _ = real_halves(config.dataset, config.source, seed=0)
    _, generated_probs = classifier.features_and_probabilities(images(truncated(len(real), None)))
    _, real_probs = classifier.features_and_probabilities(real)
    result = {"run": str(args.run), "step": gan.step, "real_fid_floor": reference["real_fid_floor"],
              "real_inception_score": reference["real_inception_score"], "rows": rows,
              "entropies": {"generated": entropies(generated_probs), "real": entropies(real_probs)},
              "machine_flags": sorted({f for f in ("avx2", "avx512_bf16") if f in Path("/proc/cpuinfo").read_text()}),
              "tensorflow": tf.__version__}
    print(json.dumps(result["entropies"], indent=2))
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
