"""Drawing digits from a trained GAN: load the generator of a run at its latest checkpoint, map noise to images."""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from aigc_tf import AigcError
from aigc_tf.gan import condition
from aigc_tf.gan.models import build_generator, sampler
from aigc_tf.runs import RunFolder

# What a truncated, foreign or mismatched checkpoint raises from TensorFlow's reader.
CHECKPOINT_ERRORS = (tf.errors.OpError, ValueError, AssertionError, IndexError, KeyError)


def to_generator_range(images01):
    """Pixels in [0, 1] -> the generator's tanh range [-1, 1], where D judges images."""
    return images01 * 2.0 - 1.0


def from_generator_range(images):
    """The generator's tanh range [-1, 1] -> pixels in [0, 1], for display and for the evaluation classifier."""
    return (images + 1.0) / 2.0


def generate(generator: keras.Model, noise, labels=None) -> np.ndarray:
    """Images in [0, 1], (N, 28, 28, 1), from noise (N, Z) [and labels (N,) for a digit-conditioned generator], with
    BatchNormalization in inference mode, so an image does not depend on the rest of its batch."""
    noise = tf.convert_to_tensor(noise, tf.float32)
    inputs = noise if labels is None else [noise, tf.convert_to_tensor(labels, tf.int32)]
    images = tf.cast(generator(inputs, training=False), tf.float32)
    return from_generator_range(images).numpy()


def load_generator(run_dir: Path, averaged: bool = True,
                   truncation: float | None = None) -> tuple[keras.Model, object, int]:
    """The generator of a run at its latest checkpoint: (generator, config, step).

    A run that keeps an exponential moving average of G's weights (`ema_decay`) gives the average unless
    `averaged=False`: it is the better sampler (aigc_tf.gan.ema), and what eval and export use.
    With the run's `truncation` (or `truncation` given here instead, 0 = none) the generator samples truncated
    noise (`models.sampler`); the config returned says which.
    """
    run = RunFolder(Path(run_dir))
    config = run.load_config("gan")
    if truncation is not None:
        config = config.replace(truncation=truncation)
    latest = tf.train.latest_checkpoint(str(run.checkpoints))
    if latest is None:
        raise AigcError(f"{run.path} has no checkpoint yet; train it first (`aigc-tf gan train --out {run.path}`)")
    generator = build_generator(config)
    step = tf.Variable(0, dtype=tf.int64)
    name = "generator_ema" if averaged and config.ema_decay else "generator"
    try:
        status = tf.train.Checkpoint(**{name: generator}, step=step).restore(latest)
        status.expect_partial()  # D, the optimisers and the noise generator stay in the checkpoint
        status.assert_existing_objects_matched()  # else a run from another version would sample an untrained G
    except (AssertionError, ValueError):
        raise AigcError(f"checkpoint {latest} does not match the run's config.json (no {name}, or a generator of "
                        "another size; written by another aigc_tf version?); train a new GAN run") from None
    except CHECKPOINT_ERRORS as err:
        raise AigcError(f"checkpoint {latest} is unreadable ({type(err).__name__}); delete its files to fall "
                        "back to the previous checkpoint") from None
    return sampler(generator, config), config, int(step.numpy())


def draw(generator: keras.Model, config, num: int, seed: int = 0, digit: int | None = None,
         chunk: int = 500) -> tuple[np.ndarray, np.ndarray | None]:
    """`num` images from noise drawn with `seed`, and their labels: for a digit-conditioned GAN `digit` (0-9) every
    time, or 0, 1, 2, ... in turn; None for the others. In chunks of `chunk`, for any `num`."""
    if digit is not None and not condition.generator_takes_labels(config):
        raise AigcError(f"this GAN was trained with condition={config.condition!r}; drawing one `digit` needs a GAN "
                        "trained with --condition digit")
    noise = np.random.default_rng(seed).standard_normal((num, config.latent_dim)).astype(np.float32)
    labels = condition.sample_labels(config, num, digit)
    images = np.concatenate([generate(generator, noise[i:i + chunk], None if labels is None else labels[i:i + chunk])
                             for i in range(0, num, chunk)])
    return images, labels


def sample_grid(run_dir: Path, out: Path, num: int = 64, seed: int = 0, digit: int | None = None) -> Path:
    """A PNG grid of `num` samples of a run (see `draw`); returns its path."""
    from aigc_tf import plots

    generator, config, _ = load_generator(run_dir)
    images, _ = draw(generator, config, num, seed, digit)
    return plots.save_grid(images, out)
