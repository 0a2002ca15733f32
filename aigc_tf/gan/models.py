"""Generator and discriminator: Keras `Sequential` stacks of Dense, LeakyReLU, BatchNormalization (and Dropout).

Goodfellow et al. 2014, "Generative Adversarial Nets": a generator G maps noise z ~ N(0, I) to an image, a
discriminator D maps an image to one logit, "real" vs "generated". MLPs are enough for 28x28 digits and keep the
lesson on the adversarial game rather than on convolutions.

Conditional variant (Mirza & Osindero 2014, "Conditional Generative Adversarial Nets"): with `condition="digit"`,
a one-hot label is joined to the noise at G's input and to the flattened image at D's input, so G learns p(x | y)
and `aigc-tf gan sample --digit 7` draws sevens. The same Sequential stacks do the work; a small functional model
only joins the inputs.

Clustered variant (`condition="cluster"`, the default): the same conditioning on k-means clusters of the training
digits instead of labels, with the cluster drawn from the noise inside G (`ClusterCode`), so G still maps noise
alone to an image; why in aigc_tf.gan.clusters. Which variant a run is: aigc_tf.gan.condition.
"""

from __future__ import annotations

import math

import keras
import numpy as np

IMAGE_SHAPE = (28, 28, 1)
IMAGE_PIXELS = 28 * 28


def build_generator(config) -> keras.Model:
    """z (B, latent_dim) [+ label (B,) int32] -> image (B, 28, 28, 1) in [-1, 1].

    BatchNormalization after each hidden layer keeps the activations' scale steady while D's gradients push G
    around; tanh bounds the output to the data's [-1, 1] range.
    """
    if config.condition != "digit":
        return _generator_stack(config, config.latent_dim)
    noise = keras.Input((config.latent_dim,), name="noise")
    label = keras.Input((), dtype="int32", name="label")
    one_hot = keras.layers.CategoryEncoding(config.num_classes, output_mode="one_hot")(label)  # (B, classes)
    joined = keras.layers.Concatenate()([noise, one_hot])  # (B, Z + classes)
    return keras.Model([noise, label], _generator_stack(config, config.latent_dim + config.num_classes)(joined),
                       name="digit_conditional_generator")


@keras.saving.register_keras_serializable(package="aigc_tf")
class ClusterCode(keras.layers.Layer):
    """Noise (B, Z) -> [one-hot cluster (B, K), the other Z - 1 noise values]: the noise picks the cluster.

    The first noise value, through the normal CDF, is uniform on [0, 1]; it falls into cluster k with the
    probability of k's share of the training digits (`cumulative_shares`, set when training starts and stored
    with the weights). So G's input stays plain N(0, I) noise for every caller (sampling, the sample grids,
    evaluation, the exported SavedModel) while each digit comes from one cluster (see aigc_tf.gan.clusters).
    """

    def __init__(self, clusters: int, **kwargs):
        super().__init__(**kwargs)
        self.clusters = clusters

    def build(self, input_shape):
        # Uniform until training sets the clusters' shares; float32 under any precision policy (a share of 0.3%
        # is below bfloat16's resolution near 1).
        uniform = np.arange(1, self.clusters + 1, dtype=np.float32) / self.clusters
        self.cumulative_shares = self.add_weight(shape=(self.clusters,), initializer=keras.initializers.Constant(
            uniform), trainable=False, dtype="float32", autocast=False, name="cumulative_shares")

    def call(self, noise):
        one_hot = keras.ops.one_hot(cluster_of(noise, self.cumulative_shares), self.clusters, dtype=noise.dtype)
        return keras.ops.concatenate([one_hot, noise[:, 1:]], axis=-1)  # (B, K + Z - 1)

    def set_shares(self, shares) -> None:
        self.cumulative_shares.assign(np.cumsum(shares).astype(np.float32))

    def get_config(self):
        return {**super().get_config(), "clusters": self.clusters}


def cluster_of(noise, cumulative_shares):
    """The cluster (B,) int32 that `ClusterCode` draws for noise (B, Z): where Phi(noise[:, 0]) falls among the
    cumulative shares. A count of boundaries below it, not a search: XLA compiles it, and so does a stock server."""
    uniform = 0.5 * (1.0 + keras.ops.erf(keras.ops.cast(noise[:, 0], "float32") / np.sqrt(2.0)))  # (B,)
    below = keras.ops.greater(uniform[:, None], cumulative_shares[None, :-1])  # (B, K - 1)
    return keras.ops.sum(keras.ops.cast(below, "int32"), axis=1)


@keras.saving.register_keras_serializable(package="aigc_tf")
class TruncatedNoise(keras.layers.Layer):
    """N(0, 1) noise -> the normal truncated to [-threshold, threshold], for sampling (see `sampler`).

    BigGAN's truncation trick (Brock et al. 2019): G trains on all of N(0, I), and samples drawn from its dense
    centre are the ones it learnt best, trading a little variety for fidelity. BigGAN redraws values beyond the
    threshold; this layer maps them instead, through the normal CDF onto the truncated normal's (an exact and
    monotone map), so every caller keeps passing plain N(0, I) noise, the exported SavedModel included. The first
    `skip` values pass unchanged: the noise value that picks a cluster must keep its distribution
    (`ClusterCode`).
    """

    def __init__(self, threshold: float, skip: int = 0, **kwargs):
        super().__init__(**kwargs)
        self.threshold, self.skip = threshold, skip

    def call(self, noise):
        values = keras.ops.cast(noise[:, self.skip:], "float32")
        low = 0.5 * (1.0 + math.erf(-self.threshold / math.sqrt(2.0)))  # Phi(-threshold)
        uniform = low + 0.5 * (1.0 + keras.ops.erf(values / np.sqrt(2.0))) * (1.0 - 2.0 * low)  # in (low, 1 - low)
        truncated = keras.ops.cast(np.sqrt(2.0) * keras.ops.erfinv(2.0 * uniform - 1.0), noise.dtype)
        return keras.ops.concatenate([noise[:, :self.skip], truncated], axis=-1)

    def get_config(self):
        return {**super().get_config(), "threshold": self.threshold, "skip": self.skip}


def sampler(generator: keras.Model, config) -> keras.Model:
    """The generator that samples: `generator` itself, or with `config.truncation` the same network behind a
    `TruncatedNoise` layer. A wrapper rather than a layer of G: truncation is a choice made when sampling, training
    never sees it, and the checkpoint holds G alone."""
    if not config.truncation:
        return generator
    noise = keras.Input((config.latent_dim,), name="noise")
    truncated = TruncatedNoise(config.truncation, skip=1 if config.condition == "cluster" else 0)(noise)
    if config.condition != "digit":
        return keras.Model(noise, generator(truncated), name="truncated_generator")
    label = keras.Input((), dtype="int32", name="label")
    return keras.Model([noise, label], generator([truncated, label]), name="truncated_generator")


def cluster_code(generator: keras.Model) -> ClusterCode | None:
    """The generator's `ClusterCode` layer (also inside a `sampler`), or None for a generator without clusters."""
    return next((layer for layer in all_layers(generator) if isinstance(layer, ClusterCode)), None)


def all_layers(model: keras.Model):
    """Every layer of a model, the Sequential stacks inside the functional (conditional, truncating) models
    included."""
    pending = [model]
    while pending:
        layer = pending.pop()
        pending.extend(getattr(layer, "layers", []))
        yield layer


def _generator_stack(config, input_dim: int) -> keras.Sequential:
    layers = [keras.Input((input_dim,), name="noise")]
    if config.condition == "cluster":
        layers.append(ClusterCode(config.clusters))
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
    if config.condition == "none":
        return _discriminator_stack(config, [keras.Input(IMAGE_SHAPE, name="image"), keras.layers.Flatten()])
    classes = config.clusters if config.condition == "cluster" else config.num_classes
    image = keras.Input(IMAGE_SHAPE, name="image")
    label = keras.Input((), dtype="int32", name="label")
    one_hot = keras.layers.CategoryEncoding(classes, output_mode="one_hot")(label)
    joined = keras.layers.Concatenate()([keras.layers.Flatten()(image), one_hot])  # (B, 784 + classes)
    stack = _discriminator_stack(config, [keras.Input((IMAGE_PIXELS + classes,), name="image_and_label")])
    return keras.Model([image, label], stack(joined), name=f"{config.condition}_conditional_discriminator")


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
