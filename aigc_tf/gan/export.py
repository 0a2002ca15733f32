"""The generator as a SavedModel for TF Serving: noise in, images in [0, 1] out."""

from __future__ import annotations

import json
from pathlib import Path

import keras
import tensorflow as tf

from aigc_tf.config import to_json
from aigc_tf.gan import condition
from aigc_tf.gan.sample import load_generator
from aigc_tf.serving.layout import publish


def export_gan(run_dir: Path, model_dir: Path = Path("saved_models/gan")) -> Path:
    """Export a GAN run's generator: `serving_default(noise: float32 [None, latent_dim]) -> images [None, 28, 28, 1]`
    (a digit-conditioned GAN, `condition="digit"`, also takes `labels: int32 [None]`).

    The images are in [0, 1] (the generator's tanh output rescaled) so a client can display them directly, and
    BatchNormalization runs in inference mode, so a sample does not depend on the rest of its batch.
    """
    generator, config, step = load_generator(run_dir)
    archive = keras.export.ExportArchive()

    noise_spec = tf.TensorSpec([None, config.latent_dim], tf.float32, name="noise")
    if condition.generator_takes_labels(config):  # + labels: int32 [None], the digit each image should show
        archive.add_endpoint(
            name="serving_default",
            fn=lambda noise, labels: {"images": (generator([noise, labels], training=False) + 1.0) / 2.0},
            input_signature=[noise_spec, tf.TensorSpec([None], tf.int32, name="labels")])
    else:
        archive.add_endpoint(name="serving_default",
                             fn=lambda noise: {"images": (generator(noise, training=False) + 1.0) / 2.0},
                             input_signature=[noise_spec])
    return publish(archive, model_dir, {"family": "gan", "run": str(Path(run_dir).resolve()), "step": step,
                                              "config": json.loads(to_json(config))})
