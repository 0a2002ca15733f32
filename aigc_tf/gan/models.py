"""Generator and discriminator: Keras `Sequential` stacks of Dense, LeakyReLU, BatchNormalization (and Dropout).

Goodfellow et al. 2014, "Generative Adversarial Nets": a generator G maps noise z ~ N(0, I) to an image, a
discriminator D maps an image to one logit, "real" vs "generated". MLPs are enough for 28x28 digits and keep the
lesson on the adversarial game rather than on convolutions.
"""

from __future__ import annotations

import keras

IMAGE_SHAPE = (28, 28, 1)
IMAGE_PIXELS = 28 * 28


def build_generator(config) -> keras.Sequential:
    """z (B, latent_dim) -> image (B, 28, 28, 1) in [-1, 1].

    BatchNormalization after each hidden layer keeps the activations' scale steady while D's gradients push G
    around; tanh bounds the output to the data's [-1, 1] range.
    """
    layers = [keras.Input((config.latent_dim,), name="noise")]
    for units in config.generator_units:
        layers += [
            keras.layers.Dense(units),
            keras.layers.LeakyReLU(config.leaky_slope),
            keras.layers.BatchNormalization(momentum=0.8),
        ]
    layers += [
        keras.layers.Dense(IMAGE_PIXELS, activation="tanh"),  # (B, 784)
        keras.layers.Reshape(IMAGE_SHAPE),  # (B, 28, 28, 1)
    ]
    return keras.Sequential(layers, name="generator")


def build_discriminator(config) -> keras.Sequential:
    """image (B, 28, 28, 1) in [-1, 1] -> one logit (B, 1); no sigmoid, the losses take logits.

    No BatchNormalization here: it would mix real and fake statistics inside a batch. Dropout keeps D from
    memorising the (small) training set and overpowering G.
    """
    layers = [keras.Input(IMAGE_SHAPE, name="image"), keras.layers.Flatten()]
    for units in config.discriminator_units:
        layers += [
            keras.layers.Dense(units),
            keras.layers.LeakyReLU(config.leaky_slope),
            keras.layers.Dropout(config.dropout),
        ]
    layers.append(keras.layers.Dense(1, name="logit"))
    return keras.Sequential(layers, name="discriminator")
