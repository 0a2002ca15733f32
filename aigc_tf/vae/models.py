"""A variational autoencoder (Kingma & Welling 2014, "Auto-Encoding Variational Bayes").

The encoder maps an image x to a Gaussian q(z|x) = N(mean, exp(log_variance)); the decoder maps a latent z to the
Bernoulli logits of p(x|z) over the 784 pixels. Training maximises the evidence lower bound

    ELBO(x) = E_q[log p(x|z)] - KL(q(z|x) || N(0, I)),

the first term a reconstruction log-likelihood (minus the pixels' binary cross-entropy, summed), the second in closed
form for two Gaussians. The sample z = mean + exp(log_variance / 2) * eps, eps ~ N(0, I), is the reparameterisation
trick: the randomness moves into eps so gradients flow through mean and log_variance.

The loss is not `y` vs `y_pred`, so `VAE` overrides `train_step` (the keras-io VAE example's idiom) and trains with
plain `fit`. All values are per image, in nats.
"""

from __future__ import annotations

import keras
from keras import ops

IMAGE_SHAPE = (28, 28, 1)


def build_encoder(config) -> keras.Model:
    """image (B, 28, 28, 1) in [0, 1] -> (mean, log_variance), each (B, latent_dim)."""
    image = keras.Input(IMAGE_SHAPE, name="image")
    if config.architecture == "conv":
        x = keras.layers.Conv2D(32, 3, strides=2, padding="same", activation="relu")(image)  # (B, 14, 14, 32)
        x = keras.layers.Conv2D(64, 3, strides=2, padding="same", activation="relu")(x)  # (B, 7, 7, 64)
        x = keras.layers.Flatten()(x)
    else:
        x = keras.layers.Flatten()(image)
    for units in config.hidden_units:
        x = keras.layers.Dense(units, activation="relu")(x)
    mean = keras.layers.Dense(config.latent_dim, name="mean")(x)
    log_variance = keras.layers.Dense(config.latent_dim, name="log_variance")(x)
    return keras.Model(image, {"mean": mean, "log_variance": log_variance}, name="encoder")


def build_decoder(config) -> keras.Model:
    """z (B, latent_dim) -> Bernoulli logits of each pixel (B, 28, 28, 1)."""
    layers = [keras.Input((config.latent_dim,), name="latent")]
    layers += [keras.layers.Dense(units, activation="relu") for units in reversed(config.hidden_units)]
    if config.architecture == "conv":
        layers += [
            keras.layers.Dense(7 * 7 * 64, activation="relu"),
            keras.layers.Reshape((7, 7, 64)),
            keras.layers.Conv2DTranspose(32, 3, strides=2, padding="same", activation="relu"),  # (B, 14, 14, 32)
            keras.layers.Conv2DTranspose(1, 3, strides=2, padding="same", name="logits"),  # (B, 28, 28, 1)
        ]
    else:
        layers += [keras.layers.Dense(28 * 28, name="logits"), keras.layers.Reshape(IMAGE_SHAPE)]
    return keras.Sequential(layers, name="decoder")


def kl_divergence(mean, log_variance):
    """KL(N(mean, exp(log_variance)) || N(0, I)) = -1/2 sum(1 + log_variance - mean^2 - exp(log_variance)), per row."""
    return -0.5 * ops.sum(1.0 + log_variance - ops.square(mean) - ops.exp(log_variance), axis=-1)


def reconstruction_nll(images, logits):
    """-log p(x|z) under independent Bernoulli pixels: the binary cross-entropy summed over pixels, per image."""
    per_pixel = ops.maximum(logits, 0) - logits * images + ops.log1p(ops.exp(-ops.abs(logits)))
    return ops.sum(ops.reshape(per_pixel, (ops.shape(images)[0], -1)), axis=-1)


class VAE(keras.Model):
    """Encoder + decoder trained on the negative ELBO with `fit`; `call` returns reconstruction probabilities."""

    def __init__(self, encoder: keras.Model, decoder: keras.Model, seed: int = 0, **kwargs):
        super().__init__(**kwargs)
        self.encoder, self.decoder = encoder, decoder
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.trackers = {name: keras.metrics.Mean(name=name) for name in ("loss", "reconstruction", "kl")}

    @property
    def metrics(self):
        return list(self.trackers.values())

    def encode(self, images):
        stats = self.encoder(images)
        return stats["mean"], stats["log_variance"]

    def reparameterise(self, mean, log_variance, seed=None):
        eps = keras.random.normal(ops.shape(mean), seed=seed or self.seed_generator)
        return mean + ops.exp(0.5 * log_variance) * eps

    def losses_of(self, images, training=False, seed=None):
        """Per-image reconstruction NLL and KL (nats), from one reparameterised sample of z (drawn with `seed`, a
        `keras.random.SeedGenerator`, when given: an evaluation that does not advance the training stream)."""
        mean, log_variance = self.encode(images)
        logits = self.decoder(self.reparameterise(mean, log_variance, seed), training=training)
        return reconstruction_nll(images, logits), kl_divergence(mean, log_variance)

    def call(self, images, training=False):
        mean, _ = self.encode(images)
        return ops.sigmoid(self.decoder(mean, training=training))

    def _update(self, reconstruction, kl):
        for name, value in (("loss", reconstruction + kl), ("reconstruction", reconstruction), ("kl", kl)):
            self.trackers[name].update_state(value)
        return {name: tracker.result() for name, tracker in self.trackers.items()}

    def train_step(self, images):
        import tensorflow as tf

        with tf.GradientTape() as tape:
            reconstruction, kl = self.losses_of(images, training=True)
            loss = ops.mean(reconstruction + kl)  # -ELBO per image
        grads = tape.gradient(loss, self.trainable_weights)
        self.optimizer.apply_gradients(zip(grads, self.trainable_weights))
        return self._update(reconstruction, kl)

    def test_step(self, images):
        return self._update(*self.losses_of(images))


def build_vae(config) -> VAE:
    """The VAE of `config` with its variables created, initialised from `config.seed`."""
    import numpy as np

    from aigc_tf.seeding import seeded

    with seeded(config.seed):
        vae = VAE(build_encoder(config), build_decoder(config), seed=config.seed)
    vae(np.zeros((1, *IMAGE_SHAPE), np.float32))  # create the variables
    return vae
