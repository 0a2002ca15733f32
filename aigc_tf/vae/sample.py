"""Drawing from a trained VAE: decode the prior, reconstruct, interpolate between two digits, map a 2-D latent."""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np

from aigc_tf import AigcError
from aigc_tf.runs import RunFolder
from aigc_tf.vae.models import VAE, build_vae

WEIGHTS_FILE = "vae.weights.h5"


def load_vae(run_dir: Path) -> tuple[VAE, object]:
    """The trained VAE of a run and its config."""
    run = RunFolder(Path(run_dir))
    config = run.load_config("vae")
    weights = run.path / WEIGHTS_FILE
    if not weights.exists():
        raise AigcError(f"{run.path} has no trained model yet; train it first (`aigc-tf vae train --out {run.path}`)")
    vae = build_vae(config)
    try:
        vae.load_weights(str(weights))
    except (OSError, ValueError) as err:
        raise AigcError(f"{weights} cannot be loaded ({type(err).__name__}); train the run again") from None
    return vae, config


def decode(vae: VAE, latents: np.ndarray) -> np.ndarray:
    """Images in [0, 1] (the Bernoulli means) from latents (N, latent_dim)."""
    return keras.ops.convert_to_numpy(keras.ops.sigmoid(vae.decoder(np.asarray(latents, np.float32))))


def prior_samples(vae: VAE, config, num: int, seed: int = 0) -> np.ndarray:
    """`num` images decoded from latents drawn from the prior N(0, I) with `seed`."""
    return decode(vae, np.random.default_rng(seed).standard_normal((num, config.latent_dim)))


def reconstruction_pairs(vae: VAE, images: np.ndarray) -> np.ndarray:
    """Rows of 8 originals, each followed by the row of their reconstructions."""
    recon = keras.ops.convert_to_numpy(vae(images))
    rows = []
    for start in range(0, len(images), 8):
        rows += [images[start:start + 8], recon[start:start + 8]]
    return np.concatenate(rows)


def interpolation(vae: VAE, first: np.ndarray, second: np.ndarray, steps: int = 10) -> np.ndarray:
    """Decoded points on the straight line between the latent means of two images."""
    mean, _ = vae.encode(np.stack([first, second]))
    mean = keras.ops.convert_to_numpy(mean)
    weights = np.linspace(0.0, 1.0, steps)[:, None]
    return decode(vae, (1 - weights) * mean[0] + weights * mean[1])


def manifold(vae: VAE, size: int = 15, extent: float = 2.5) -> np.ndarray:
    """For a 2-D latent: decoded images on a size x size grid over [-extent, extent]^2 (rows: z1 top to bottom)."""
    axis = np.linspace(-extent, extent, size)
    grid = np.array([[x, y] for y in axis[::-1] for x in axis], np.float32)
    return decode(vae, grid)


def sample_grid(run_dir: Path, out: Path, num: int = 64, seed: int = 0) -> Path:
    """A PNG grid of `num` prior samples of a run; returns its path."""
    from aigc_tf import plots

    vae, config = load_vae(run_dir)
    return plots.save_grid(prior_samples(vae, config, num, seed), out)
