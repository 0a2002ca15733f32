"""How good is a VAE? Its ELBO on the test split (how well it explains real digits) and the FID / Inception-style
score of its prior samples (how real its own digits look), on the same yardstick as the GAN."""

from __future__ import annotations

import json
from pathlib import Path

import keras
import numpy as np

from aigc_tf.data.images import unit_images
from aigc_tf.metrics.image_quality import COPIES_FIGURE, sample_quality, save_nearest_copies
from aigc_tf.vae.sample import load_vae, prior_samples

EVAL_FILE = "eval.json"


def elbo_report(vae, config, seed: int = 0) -> dict:
    """Per-image reconstruction NLL, KL and ELBO (nats) on the test split, one z sample per image drawn with
    `seed`."""
    x_test = unit_images(config.dataset, "test", config.source)
    draws = keras.random.SeedGenerator(seed)
    recon, kl = [], []
    for start in range(0, len(x_test), 500):
        r, k = vae.losses_of(x_test[start:start + 500], seed=draws)
        recon.append(keras.ops.convert_to_numpy(r))
        kl.append(keras.ops.convert_to_numpy(k))
    recon, kl = float(np.concatenate(recon).mean()), float(np.concatenate(kl).mean())
    return {"elbo": -(recon + kl), "reconstruction": recon, "kl": kl, "test_images": int(len(x_test))}


def evaluate_vae(run_dir: Path, seed: int = 0, verbose: int = 2) -> dict:
    """ELBO terms and sample quality of a run, also written to `<run>/eval.json`; the prior samples closest to
    a training digit are drawn to `<run>/nearest_copies.png`."""
    vae, config = load_vae(run_dir)
    drawn = {}

    def generate_fn(n):
        drawn["images"] = prior_samples(vae, config, n, seed)
        return drawn["images"]

    report = {"run": str(run_dir), **elbo_report(vae, config, seed),
              **sample_quality(generate_fn, config.dataset, config.source, seed=seed, verbose=verbose)}
    save_nearest_copies(drawn["images"], report, Path(run_dir) / COPIES_FIGURE)
    (Path(run_dir) / EVAL_FILE).write_text(json.dumps(report, indent=2))
    return report
