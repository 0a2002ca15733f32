"""GAN losses as pure functions of logits, in the style of TF-GAN.

They return one loss per example, not a mean: the train step reduces them with `tf.nn.compute_average_loss`, which
divides by the *global* batch size, the reduction that stays correct when a `tf.distribute` strategy splits the
batch across replicas.
"""

import tensorflow as tf


def _bce(targets, logits):
    return tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(labels=targets, logits=logits), axis=-1)


def non_saturating_generator_loss(fake_logits):
    """L_G = -log D(G(z)) = softplus(-logit), per example.

    Goodfellow et al. 2014, section 3: minimising log(1 - D(G(z))) saturates early on when D rejects every sample
    with confidence; maximising log D(G(z)) has the same fixed point and strong gradients there.
    """
    return _bce(tf.ones_like(fake_logits), fake_logits)


def minimax_discriminator_loss(real_logits, fake_logits, label_smoothing=0.0):
    """L_D = -log D(x) - log(1 - D(G(z))), per example, with one-sided label smoothing.

    With smoothing s the real target is 1 - s (Salimans et al. 2016, "Improved techniques for training GANs"):
    D is never rewarded for unbounded confidence on real data, which keeps its gradients useful to G. Fake
    targets stay 0 (smoothing them too would reward G's mistakes).
    """
    real_targets = tf.fill(tf.shape(real_logits), 1.0 - tf.cast(label_smoothing, real_logits.dtype))
    return _bce(real_targets, real_logits) + _bce(tf.zeros_like(fake_logits), fake_logits)


def hinge_generator_loss(fake_logits):
    """L_G = -D(G(z)), per example (Lim & Ye 2017; the loss of SNGAN, BigGAN): G raises D's raw score of its images."""
    return -tf.reduce_mean(fake_logits, axis=-1)


def hinge_discriminator_loss(real_logits, fake_logits, label_smoothing=0.0):
    """L_D = max(0, 1 - D(x)) + max(0, 1 + D(G(z))), per example: D stops pushing an image once its score is past
    the margin, so it cannot win by growing its logits without bound. (Label smoothing does not apply.)"""
    del label_smoothing
    return (tf.reduce_mean(tf.nn.relu(1.0 - real_logits), axis=-1)
            + tf.reduce_mean(tf.nn.relu(1.0 + fake_logits), axis=-1))


LOSSES = {
    "non_saturating": (non_saturating_generator_loss, minimax_discriminator_loss),
    "hinge": (hinge_generator_loss, hinge_discriminator_loss),
}


def generator_loss(name: str, fake_logits):
    return LOSSES[name][0](fake_logits)


def discriminator_loss(name: str, real_logits, fake_logits, label_smoothing=0.0):
    return LOSSES[name][1](real_logits, fake_logits, label_smoothing)
