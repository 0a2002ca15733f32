"""Notebook 1, exercise 1: the GAN's losses from logits, one value per example."""

import tensorflow as tf


def generator_loss(fake_logits):
    """-log D(G(z)) = -log sigmoid(l) = softplus(-l): large where D rejects the fake, with a slope near -1 there."""
    return tf.reduce_mean(tf.nn.softplus(-fake_logits), axis=-1)  # (B, 1) -> (B,)


def discriminator_loss(real_logits, fake_logits, label_smoothing=0.0):
    """BCE(1 - s, real logit) + BCE(0, fake logit); BCE(t, x) = t softplus(-x) + (1 - t) softplus(x)."""
    target = 1.0 - label_smoothing
    real = target * tf.nn.softplus(-real_logits) + (1.0 - target) * tf.nn.softplus(real_logits)
    fake = tf.nn.softplus(fake_logits)
    return tf.reduce_mean(real, axis=-1) + tf.reduce_mean(fake, axis=-1)
