"""Generator and discriminator: Keras `Sequential` stacks of Dense, LeakyReLU, BatchNormalization (and Dropout).

Goodfellow et al. 2014, "Generative Adversarial Nets": a generator G maps noise z ~ N(0, I) to an image, a
discriminator D maps an image to one logit, "real" vs "generated". MLPs are enough for 28x28 digits and keep the
lesson on the adversarial game rather than on convolutions.

Conditional variant (Mirza & Osindero 2014, "Conditional Generative Adversarial Nets"): with `config.conditional`,
a one-hot label is joined to the noise at G's input and to the flattened image at D's input, so G learns p(x | y)
and `aigc-tf gan sample --digit 7` draws sevens. The same Sequential stacks do the work; a small functional model
only joins the inputs.
"""

from __future__ import annotations

import keras

IMAGE_SHAPE = (28, 28, 1)
IMAGE_PIXELS = 28 * 28


def build_generator(config) -> keras.Model:
    """z (B, latent_dim) [+ label (B,) int32] -> image (B, 28, 28, 1) in [-1, 1].

    BatchNormalization after each hidden layer keeps the activations' scale steady while D's gradients push G
    around; tanh bounds the output to the data's [-1, 1] range.
    """
    if not config.conditional:
        return _generator_stack(config, config.latent_dim)
    noise = keras.Input((config.latent_dim,), name="noise")
    label = keras.Input((), dtype="int32", name="label")
    one_hot = keras.layers.CategoryEncoding(config.num_classes, output_mode="one_hot")(label)  # (B, classes)
    joined = keras.layers.Concatenate()([noise, one_hot])  # (B, Z + classes)
    return keras.Model([noise, label], _generator_stack(config, config.latent_dim + config.num_classes)(joined),
                       name="conditional_generator")


@keras.saving.register_keras_serializable(package="aigc_tf")
class CategoricalCode(keras.layers.Layer):
    """Turns the first `codes` noise dimensions into a one-hot category: their argmax, uniform over `codes`.

    A generator fed only Gaussian noise maps a connected space onto the data, so between two digit classes it
    must also draw the digits in between (a continuous map cannot tear the noise space apart; Khayatkhoei et al.
    2018, "Disconnected Manifold Learning for Generative Adversarial Networks"). A categorical code gives it
    disconnected pieces to draw each class from (InfoGAN, Chen et al. 2016, whose discriminator also learns to
    recover the code from the image; see `code_of` and the training step). The argmax of i.i.d. Gaussians is
    uniform, so the generator's input stays plain N(0, I) noise for every caller: sampling, the sample grids,
    evaluation and the exported SavedModel draw noise as before, and no label is ever used.
    """

    def __init__(self, codes: int, **kwargs):
        super().__init__(**kwargs)
        self.codes = codes

    def call(self, noise):
        one_hot = keras.ops.one_hot(code_of(noise, self.codes), self.codes, dtype=noise.dtype)  # (B, codes)
        return keras.ops.concatenate([one_hot, noise[:, self.codes:]], axis=-1)  # (B, Z): the same width

    def get_config(self):
        return {**super().get_config(), "codes": self.codes}


def code_of(noise, codes: int):
    """The category (B,) int that `CategoricalCode` reads from noise (B, Z): the argmax of its first `codes` dims."""
    return keras.ops.argmax(noise[:, :codes], axis=-1)


def _generator_stack(config, input_dim: int) -> keras.Sequential:
    layers = [keras.Input((input_dim,), name="noise")]
    if config.latent_codes:
        layers.append(CategoricalCode(config.latent_codes))
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


def build_discriminator(config) -> keras.Model:
    """image (B, 28, 28, 1) in [-1, 1] [+ label (B,) int32] -> one logit (B, 1); no sigmoid, the losses take logits.

    No BatchNormalization here: it would mix real and fake statistics inside a batch. Dropout keeps D from
    memorising the (small) training set and overpowering G.
    """
    if not config.conditional:
        return _discriminator_stack(config, [keras.Input(IMAGE_SHAPE, name="image"), keras.layers.Flatten()])
    image = keras.Input(IMAGE_SHAPE, name="image")
    label = keras.Input((), dtype="int32", name="label")
    one_hot = keras.layers.CategoryEncoding(config.num_classes, output_mode="one_hot")(label)
    joined = keras.layers.Concatenate()([keras.layers.Flatten()(image), one_hot])  # (B, 784 + classes)
    stack = _discriminator_stack(config, [keras.Input((IMAGE_PIXELS + config.num_classes,), name="image_and_label")])
    return keras.Model([image, label], stack(joined), name="conditional_discriminator")


def _discriminator_stack(config, layers: list) -> keras.Sequential:
    for units in config.discriminator_units:
        layers += [
            _maybe_spectral(config, keras.layers.Dense(units)),
            keras.layers.LeakyReLU(config.leaky_slope),
        ]
        if config.dropout:
            layers.append(keras.layers.Dropout(config.dropout))
    layers.append(_maybe_spectral(config, keras.layers.Dense(1, name="logit")))
    return keras.Sequential(layers, name="discriminator")


def _maybe_spectral(config, dense: keras.layers.Dense) -> keras.layers.Layer:
    """With `config.spectral_norm`, the Dense layer's kernel divided by its largest singular value (estimated by
    one power iteration per step; Miyato et al. 2018): each layer, and so D, is 1-Lipschitz, which bounds how sharply
    D's verdict can change between nearby images and keeps its gradients to G informative."""
    return keras.layers.SpectralNormalization(dense) if config.spectral_norm else dense


def build_code_head(config) -> keras.Model:
    """InfoGAN's Q head: D's last hidden features (B, units) -> logits of the categorical code (B, latent_codes).

    Trained with D (and G) to recover from a generated image the code it was drawn with, which makes G give each
    code a recognisably different output: the mutual-information term of Chen et al. 2016 for a categorical code.
    """
    return keras.Sequential([keras.Input((config.discriminator_units[-1],)), keras.layers.Dense(config.latent_codes)],
                            name="code_head")


def discriminator_features(discriminator: keras.Sequential, images, training: bool = True):
    """D's last hidden features of images (B, 28, 28, 1): every layer of the unconditional D but the logit."""
    features = images
    for layer in discriminator.layers[:-1]:
        features = layer(features, training=training)
    return features
