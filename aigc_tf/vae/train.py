"""Training the VAE with `fit` (its `train_step` holds the ELBO), and the figures a learner wants from it.

Same run-folder conventions as the GAN: `config.json`, `BackupAndRestore` (re-run the same command to resume),
`history.csv`, a loss-curve PNG, TensorBoard scalars and images, and a reconstruction grid per epoch (fixed test
digits on odd rows, their reconstructions below them). At the end: prior samples, an interpolation between two
encoded test digits, and the 2-D latent manifold when `latent_dim` is 2.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from aigc_tf import AigcError, distribute, plots
from aigc_tf.data import images as image_data
from aigc_tf.runs import RunFolder
from aigc_tf.vae.models import VAE, build_decoder, build_encoder

WEIGHTS_FILE = "vae.weights.h5"
GRID_DIGITS = 16


def build_vae(config) -> VAE:
    vae = VAE(build_encoder(config), build_decoder(config), seed=config.seed)
    vae(np.zeros((1, 28, 28, 1), np.float32))  # create the variables
    return vae


def unit_images(dataset: str, split: str, source: str | None) -> np.ndarray:
    return image_data.load_arrays(dataset, split, source).images.astype(np.float32) / 255.0


class ReconstructionGrid(keras.callbacks.Callback):
    """Fixed test digits and their reconstructions, every epoch, as a PNG and a TensorBoard image."""

    def __init__(self, images: np.ndarray, folder: Path, tensorboard_dir: Path):
        super().__init__()
        self.images, self.folder = images, Path(folder)
        self.writer = tf.summary.create_file_writer(str(Path(tensorboard_dir) / "images"))

    def on_epoch_end(self, epoch, logs=None):
        grid = reconstruction_pairs(self.model, self.images)
        plots.save_grid(grid, self.folder / f"epoch_{epoch + 1:04d}.png", columns=8)
        with self.writer.as_default(step=epoch + 1):
            tf.summary.image("reconstructions", plots.image_grid(grid, 8, scale=1)[None, ..., None])
        self.writer.flush()


def reconstruction_pairs(vae: VAE, images: np.ndarray) -> np.ndarray:
    """Rows of 8 originals, each followed by the row of their reconstructions."""
    recon = keras.ops.convert_to_numpy(vae(images))
    rows = []
    for start in range(0, len(images), 8):
        rows += [images[start:start + 8], recon[start:start + 8]]
    return np.concatenate(rows)


@dataclasses.dataclass
class VAETrainResult:
    run_dir: Path
    history: list[dict]
    seconds: float
    outputs: dict[str, Path]


def train(config, run_dir: Path, *, steps: int | None = None, verbose: bool = True, strategy: str = "one",
          deterministic: bool = False) -> VAETrainResult:
    """Train (or resume) a VAE run for `config.epochs` epochs, or about `steps` steps.

    `strategy` is a `--strategy` name: the VAE is built and compiled in its scope and `fit` splits every global
    batch over the replicas; only the chief writes the run folder.
    """
    dist = distribute.select_strategy(strategy)  # first: a multi-worker strategy must precede every TF op
    distribute.check_batch_size(dist, config.batch_size)
    chief = distribute.is_chief(dist)
    run = RunFolder(Path(run_dir))
    if chief:
        run.prepare(config)
    if deterministic:
        distribute.enable_determinism()
    keras.utils.set_random_seed(config.seed)
    x_train = unit_images(config.dataset, "train", config.source)
    x_test = unit_images(config.dataset, "test", config.source)
    steps_per_epoch = len(x_train) // config.batch_size
    if steps_per_epoch < 1:
        raise AigcError(f"batch size {config.batch_size} is larger than the {len(x_train)} training images")
    if steps:
        steps_per_epoch = min(steps_per_epoch, steps)
    epochs = math.ceil(steps / steps_per_epoch) if steps else config.epochs
    train_ds = (tf.data.Dataset.from_tensor_slices(x_train).shuffle(len(x_train), seed=config.seed)
                .batch(config.batch_size, drop_remainder=True).repeat().prefetch(tf.data.AUTOTUNE))
    test_ds = tf.data.Dataset.from_tensor_slices(x_test).batch(500)

    with dist.scope():
        vae = build_vae(config)
        vae.compile(optimizer=keras.optimizers.Adam(config.learning_rate),
                    jit_compile=config.jit_compile and not distribute.is_distributed(dist))  # see aigc_tf.distribute
    seconds = run.fit(vae, train_ds, epochs=epochs, steps_per_epoch=steps_per_epoch, validation_data=test_ds,
                      extra_callbacks=[ReconstructionGrid(x_test[:GRID_DIGITS], run.samples, run.tensorboard)]
                      if chief else [],
                      verbose=verbose, chief=chief, backup_write_dir=distribute.write_dir(dist, run.backup))
    if not chief:
        return VAETrainResult(run.path, [], seconds, {})
    vae.save_weights(str(run.path / WEIGHTS_FILE))
    outputs = {"run": run.path, "weights": run.path / WEIGHTS_FILE, "history": run.history_csv,
               "tensorboard": run.tensorboard, **save_figures(vae, config, x_test, run)}
    return VAETrainResult(run.path, run.read_history(), seconds, outputs)


def decode(vae: VAE, latents: np.ndarray) -> np.ndarray:
    """Images in [0, 1] (the Bernoulli means) from latents (N, latent_dim)."""
    return keras.ops.convert_to_numpy(keras.ops.sigmoid(vae.decoder(np.asarray(latents, np.float32))))


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


def save_figures(vae: VAE, config, x_test: np.ndarray, run: RunFolder) -> dict[str, Path]:
    rng = np.random.default_rng(config.seed)
    outputs = {
        "reconstructions": plots.save_grid(reconstruction_pairs(vae, x_test[:32]), run.path / "reconstructions.png",
                                           columns=8),
        "prior_samples": plots.save_grid(decode(vae, rng.standard_normal((64, config.latent_dim))),
                                         run.path / "prior_samples.png", columns=8),
        "interpolation": plots.save_grid(interpolation(vae, x_test[0], x_test[1]), run.path / "interpolation.png",
                                         columns=10),
    }
    if config.latent_dim == 2:
        outputs["manifold"] = plots.save_grid(manifold(vae), run.path / "latent_manifold.png", columns=15)
    frames = sorted(run.samples.glob("epoch_*.png"))
    if frames:
        outputs["gif"] = plots.save_gif(frames, run.path / "reconstructions.gif")
    if run.history_csv.exists():
        outputs["loss_curve"] = plots.save_loss_curve(run.history_csv, run.path / "loss_curve.png",
                                                      ["loss", "val_loss", "reconstruction", "kl"],
                                                      f"VAE on {config.dataset}: -ELBO and its terms (nats)",
                                                      x="epoch")
    return outputs


def load_vae(run_dir: Path) -> tuple[VAE, object]:
    run = RunFolder(Path(run_dir))
    config = run.load_config("vae")
    weights = run.path / WEIGHTS_FILE
    if not weights.exists():
        raise AigcError(f"{run.path} has no trained model yet; train it first: aigc-tf vae train --out {run.path}")
    vae = build_vae(config)
    try:
        vae.load_weights(str(weights))
    except (OSError, ValueError) as err:
        raise AigcError(f"{weights} cannot be loaded ({type(err).__name__}); retrain with aigc-tf vae train") from None
    return vae, config


def elbo_report(vae: VAE, config, seed: int = 0) -> dict:
    """Per-image reconstruction NLL, KL and ELBO (nats) on the test split, one z sample per image."""
    keras.utils.set_random_seed(seed)
    x_test = unit_images(config.dataset, "test", config.source)
    recon, kl = [], []
    for start in range(0, len(x_test), 500):
        r, k = vae.losses_of(x_test[start:start + 500])
        recon.append(keras.ops.convert_to_numpy(r))
        kl.append(keras.ops.convert_to_numpy(k))
    recon, kl = float(np.concatenate(recon).mean()), float(np.concatenate(kl).mean())
    return {"elbo": -(recon + kl), "reconstruction": recon, "kl": kl, "test_images": int(len(x_test))}
