"""Notebook 2, exercise 1: the reparameterisation trick."""

import tensorflow as tf


def reparameterize(mean, log_variance, epsilon):
    """z = mean + sigma * epsilon with sigma = exp(log_variance / 2): the noise is an input, so gradients reach
    mean and log_variance."""
    return mean + tf.exp(0.5 * log_variance) * epsilon
