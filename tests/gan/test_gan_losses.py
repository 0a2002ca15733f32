import math

import numpy as np

from aigc_tf.gan import losses


def softplus(x):
    return math.log1p(math.exp(x))


def test_generator_loss_is_minus_log_d_of_fake():
    logits = np.array([[0.0], [2.0], [-3.0]], np.float32)
    expected = [-math.log(1 / (1 + math.exp(-x))) for x in (0.0, 2.0, -3.0)]  # -log sigmoid(x)
    np.testing.assert_allclose(losses.non_saturating_generator_loss(logits).numpy(), expected, rtol=1e-6)


def test_discriminator_loss_hand_computed():
    real = np.array([[1.5], [-0.5]], np.float32)
    fake = np.array([[-2.0], [0.3]], np.float32)
    # -log sigmoid(r) - log(1 - sigmoid(f)) = softplus(-r) + softplus(f)
    expected = [softplus(-1.5) + softplus(-2.0), softplus(0.5) + softplus(0.3)]
    np.testing.assert_allclose(losses.minimax_discriminator_loss(real, fake).numpy(), expected, rtol=1e-6)


def test_one_sided_label_smoothing_targets_real_at_one_minus_s():
    real = np.array([[0.7]], np.float32)
    fake = np.array([[0.0]], np.float32)
    s = 0.1
    p = 1 / (1 + math.exp(-0.7))
    expected = -(1 - s) * math.log(p) - s * math.log(1 - p) + math.log(2)  # fake term: -log(1 - 0.5)
    got = losses.minimax_discriminator_loss(real, fake, label_smoothing=s).numpy()
    np.testing.assert_allclose(got, [expected], rtol=1e-6)
    # Smoothing only changes the real term: with fake logits alone the loss is unchanged.
    assert np.allclose(losses.minimax_discriminator_loss(np.array([[30.0]], np.float32), fake, 0.0).numpy(),
                       [math.log(2)], atol=1e-6)
