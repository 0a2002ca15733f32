"""The averaged generator: an exponential moving average of G's weights, and its own BatchNormalization statistics.

A GAN's generator never settles: each step pushes it to where D is weakest, so its weights keep circling around a
good solution. Sampling from an average of the recent weights (Yazici et al. 2019, "The Unusual Effectiveness of
Averaging in GAN Training") lands nearer the centre. The average only samples, evaluates and exports; training
never reads it.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from aigc_tf.gan import condition
from aigc_tf.gan.models import all_layers

CALIBRATION_SAMPLES = 4096  # noise vectors behind the averaged generator's BatchNormalization statistics


def update(average: keras.Model, generator: keras.Model, step, decay: float) -> None:
    """G_ema <- d * G_ema + (1 - d) * G for the trainable weights, `step` being the number of steps taken.

    The decay ramps up as min(decay, (1 + t) / (10 + t)) over the first steps (as `tf.train.
    ExponentialMovingAverage` does with `num_updates`), so a short run's average is not dominated by the random
    initial weights. Inside `strategy.run` the update is made once, in cross-replica context (`merge_call`): G's
    weights are the same on every replica, and a cross-replica assign updates every copy of the average.
    """
    def assign(*_):
        t = tf.cast(step, tf.float32)
        d = tf.minimum(tf.constant(decay, tf.float32), (1.0 + t) / (10.0 + t))
        for mean, weight in zip(average.trainable_variables, generator.trainable_variables):
            mean.assign(d * mean + (1.0 - d) * weight)

    context = tf.distribute.get_replica_context()
    if context is None or not tf.distribute.has_strategy():  # no strategy, or already cross-replica
        assign()
    else:
        context.merge_call(assign)


def calibrate(average: keras.Model, config, num: int = CALIBRATION_SAMPLES) -> None:
    """Set the averaged generator's BatchNormalization statistics to those of its own activations.

    The live G's moving statistics describe the live weights; the averaged weights produce other activations,
    and normalising them with the live statistics undoes part of what averaging gained (the "standing
    statistics" of Brock et al. 2019, BigGAN). One training-mode pass over `num` fixed noise vectors with the
    layers' momentum at 0 stores exactly that batch's statistics. Run before every checkpoint, so whatever
    samples, evaluates or exports the run reads calibrated statistics.
    """
    norms = [layer for layer in all_layers(average) if isinstance(layer, keras.layers.BatchNormalization)]
    momenta = [layer.momentum for layer in norms]
    noise = np.random.default_rng(config.seed + 1).standard_normal((num, config.latent_dim)).astype(np.float32)
    try:
        for layer in norms:
            layer.momentum = 0.0
        average(condition.generator_inputs(config, noise, condition.sample_labels(config, num)), training=True)
    finally:
        for layer, momentum in zip(norms, momenta):
            layer.momentum = momentum
