"""The R1 gradient penalty on real images (Mescheder et al. 2018), with StyleGAN2's lazy interval.

R1 = gamma / 2 * ||grad_x D(x)||^2 on real images x: it flattens D's verdict around the data, so D cannot grow the
steep walls that send G's gradients off in all directions. It differentiates D's gradient with respect to its input,
a second backward pass through D that costs a large share of the step (bench/DECISIONS.md). Lazy regularisation
(Karras et al. 2020) adds it on every `r1_interval`-th step only, weighted by the interval, so the penalty per image
seen stays the same at a fraction of the cost.
"""

from __future__ import annotations

import tensorflow as tf


def penalty(judge, real_images, gamma: float, interval: int):
    """Per-example R1 (B,) float32 of `judge` (images -> logits (B, 1)) at the real images, weighted by the interval
    (the step that carries it carries the penalty of `interval` steps)."""
    with tf.GradientTape() as tape:
        tape.watch(real_images)
        real_sum = tf.reduce_sum(tf.cast(judge(real_images), tf.float32))  # each example's own gradient
    gradients = tf.cast(tape.gradient(real_sum, real_images), tf.float32)  # (B, 28, 28, 1)
    return gamma / 2 * interval * tf.reduce_sum(tf.square(gradients), axis=tf.range(1, tf.rank(gradients)))


def applies(step, gamma: float, interval: int):
    """Whether step number `step` (0-based, counted over the whole run; a Python int or a tensor) adds R1: every
    `interval`-th step, counted by the global step, so a resumed run regularises the same steps as an uninterrupted
    one."""
    if isinstance(step, int):
        return bool(gamma) and step % interval == 0
    return tf.logical_and(tf.constant(bool(gamma)), tf.equal(step % interval, 0))
