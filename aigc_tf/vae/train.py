"""Training the VAE with `fit` (its `train_step` holds the ELBO), and the figures a learner wants from it.

Same run-folder conventions as the GAN: `config.json`, an epoch backup (re-run the same command to resume),
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
from aigc_tf.data.images import unit_images
from aigc_tf.runs import RunFolder
from aigc_tf.training import fit_run
from aigc_tf.vae.models import VAE, build_vae
from aigc_tf.vae.sample import WEIGHTS_FILE, interpolation, manifold, prior_samples, reconstruction_pairs

GRID_DIGITS = 16


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


@dataclasses.dataclass
class VAETrainResult:
    run_dir: Path
    history: list[dict]
    seconds: float
    outputs: dict[str, Path]


def train_vae(config, run_dir: Path, *, steps: int | None = None, verbose: bool = True,
              strategy: str = "one") -> VAETrainResult:
    """Train (or resume) a VAE run for `config.epochs` epochs, or about `steps` steps.

    `strategy` is a strategy name (see `aigc_tf.distribute`): the VAE is built and compiled in its scope and `fit`
    splits every global batch over the replicas; only the chief writes the run folder, holding its lock.
    """
    dist, chief = distribute.start(strategy, config.batch_size)
    x_train = unit_images(config.dataset, "train", config.source)
    x_test = figure_order(unit_images(config.dataset, "test", config.source))
    steps_per_epoch = len(x_train) // config.batch_size
    if steps_per_epoch < 1:
        raise AigcError(f"`batch_size` {config.batch_size} is larger than the {len(x_train)} training images")
    if steps:
        steps_per_epoch = min(steps_per_epoch, steps)
    epochs = math.ceil(steps / steps_per_epoch) if steps else config.epochs
    train_ds = (tf.data.Dataset.from_tensor_slices(x_train).shuffle(len(x_train), seed=config.seed)
                .batch(config.batch_size, drop_remainder=True).repeat().prefetch(tf.data.AUTOTUNE))
    test_ds = tf.data.Dataset.from_tensor_slices(x_test).batch(500)

    with RunFolder(Path(run_dir)).open_for_training(config, "vae train", chief) as run:
        with dist.scope():
            vae = build_vae(config)
            vae.compile(optimizer=keras.optimizers.Adam(config.learning_rate),
                        jit_compile=config.jit_compile and not distribute.is_distributed(dist))  # see distribute
        seconds = fit_run(run, vae, train_ds, epochs=epochs, steps_per_epoch=steps_per_epoch,
                          validation_data=test_ds,
                          extra_callbacks=[ReconstructionGrid(x_test[:GRID_DIGITS], run.samples, run.tensorboard)]
                          if chief else [],
                          verbose=verbose, chief=chief, backup_write_dir=distribute.write_dir(dist, run.backup))
        if not chief:
            return VAETrainResult(run.path, [], seconds, {})
        vae.save_weights(str(run.path / WEIGHTS_FILE))
        outputs = {"run": run.path, "weights": run.path / WEIGHTS_FILE, "history": run.history_csv,
                   "tensorboard": run.tensorboard, **save_figures(vae, config, x_test, run)}
        return VAETrainResult(run.path, run.read_history(), seconds, outputs)


def figure_order(x_test: np.ndarray) -> np.ndarray:
    """The test digits in a fixed shuffled order: the offline splits are sorted by label, and the figures take the
    first few digits, which would otherwise all be zeros."""
    return x_test[np.random.default_rng(0).permutation(len(x_test))]


def save_figures(vae: VAE, config, x_test: np.ndarray, run: RunFolder) -> dict[str, Path]:
    outputs = {
        "reconstructions": plots.save_grid(reconstruction_pairs(vae, x_test[:32]), run.path / "reconstructions.png",
                                           columns=8),
        "prior_samples": plots.save_grid(prior_samples(vae, config, 64, config.seed),
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
