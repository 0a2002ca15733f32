"""Adversarial examples: FGSM and PGD under an L-infinity budget, as pure functions of a classifier.

An adversarial example is an input x' = x + delta, with every pixel moved by at most epsilon (||delta||_inf <=
epsilon), that the classifier gets wrong although a person still sees the same digit. Both attacks climb the
classifier's loss L(f(x'), y) with the sign of its gradient with respect to the pixels:

    FGSM (Goodfellow et al. 2015, "Explaining and Harnessing Adversarial Examples"), one step:
        x' = clip(x + epsilon * sign(grad_x L(f(x), y)))
    PGD (Madry et al. 2018, "Towards Deep Learning Models Resistant to Adversarial Attacks"), from a random start
    x'_0 = clip(x + U(-epsilon, epsilon)), `steps` steps of size alpha, each projected back:
        x'_{t+1} = clip(x'_t + alpha * sign(grad_x L(f(x'_t), y)))

`clip` is the projection onto the set of allowed images: the epsilon-ball around x AND the valid pixel range. Both
are boxes, so projecting onto their intersection is one per-pixel clip to [max(x - eps, 0), min(x + eps, 1)].
Why the sign: under an L-infinity budget the first-order best move is to push every pixel by the full budget in the
direction that raises the loss (the linear explanation of Goodfellow et al.). Why PGD is stronger: FGSM trusts
that linear picture over the whole ball; PGD re-reads the gradient after each small step, and its random start
avoids the sharp curvature right at x that a model can learn to hide behind ("gradient masking").

Pixels are in [0, 1]: what the evaluation classifier (`aigc_tf.metrics.classifier`) and the data's
`unit_images` speak. The classifier is called with `training=False` (no dropout, BatchNormalization's moving
statistics, no random augmentation), so the attack differentiates the function that is being evaluated. It
outputs logits (`from_logits=True`); a model ending in a softmax passes `from_logits=False`.

Randomness (PGD's start) comes only from a stateless draw of an explicit `seed` (two integers): the same seed gives
the same adversarial images, in a test, in a `tf.function` or inside a train step.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

PIXEL_RANGE = (0.0, 1.0)
# alpha = 2.5 * epsilon / steps, the rule of thumb of the Madry lab's `robustness` library (Engstrom et al. 2019):
# all steps together span 2.5 epsilon, more than the ball's width (2 epsilon), so PGD can reach any of its corners.
PGD_STEP_FACTOR = 2.5


def per_example_loss(model: keras.Model, images, labels, from_logits: bool = True):
    """Cross-entropy of each image (B,) under the model in inference mode: the quantity an attack climbs."""
    outputs = tf.cast(model(images, training=False), tf.float32)  # (B, classes)
    return keras.losses.sparse_categorical_crossentropy(labels, outputs, from_logits=from_logits)  # (B,)


def input_gradient(model: keras.Model, images, labels, from_logits: bool = True):
    """d loss / d pixels (B, 28, 28, 1), each image's gradient of its own loss.

    The losses are summed, not averaged: a mean would divide every gradient by the batch size, which the sign
    ignores but a reader comparing magnitudes would not."""
    with tf.GradientTape() as tape:
        tape.watch(images)
        loss = tf.reduce_sum(per_example_loss(model, images, labels, from_logits))
    return tape.gradient(loss, images)


def project(adversarial, images, epsilon, pixel_range: tuple[float, float] = PIXEL_RANGE):
    """Clip `adversarial` into the epsilon-ball around `images` (L-infinity) and into the pixel range."""
    low, high = pixel_range
    adversarial = tf.clip_by_value(adversarial, images - epsilon, images + epsilon)
    return tf.clip_by_value(adversarial, low, high)


def fgsm(model: keras.Model, images, labels, epsilon, *, from_logits: bool = True,
         pixel_range: tuple[float, float] = PIXEL_RANGE):
    """The fast gradient sign method: one step of size epsilon along sign(grad_x loss), then `project`.

    Args:
        model: a classifier of images (B, 28, 28, 1) in `pixel_range`.
        images: clean images (B, 28, 28, 1).
        labels: their true classes (B,) int.
        epsilon: the L-infinity budget, in pixel units (0.3 = 30% of the range).
        from_logits: whether the model outputs logits (the project's classifiers do) or probabilities.
    Returns:
        adversarial images (B, 28, 28, 1), float32, within epsilon of `images` and inside `pixel_range`.
    """
    images = tf.convert_to_tensor(images, tf.float32)
    epsilon = tf.cast(epsilon, tf.float32)
    gradient = input_gradient(model, images, labels, from_logits)
    return project(images + epsilon * tf.sign(gradient), images, epsilon, pixel_range)


def pgd(model: keras.Model, images, labels, epsilon, *, steps: int = 10, step_size=None, random_start: bool = True,
        seed=(0, 0), from_logits: bool = True, pixel_range: tuple[float, float] = PIXEL_RANGE):
    """Projected gradient descent on the negative loss (ascent on the loss) inside the L-infinity ball.

    Args:
        model, images, labels, epsilon, from_logits, pixel_range: as for `fgsm`.
        steps: gradient-sign steps; Madry et al. used 40 (and 100 with restarts) on MNIST to evaluate.
        step_size: alpha; default 2.5 * epsilon / steps (`PGD_STEP_FACTOR`).
        random_start: start from x + U(-epsilon, epsilon) (projected), as Madry et al. do; with `steps=1` and
            `step_size=1.25 * epsilon` this is the "FGSM with random initialisation" of Wong et al. 2020.
        seed: two integers (or an int32/int64 tensor of shape (2,)) for the stateless random start.
    Returns:
        adversarial images (B, 28, 28, 1), float32, within epsilon of `images` and inside `pixel_range`.
    """
    images = tf.convert_to_tensor(images, tf.float32)
    epsilon = tf.cast(epsilon, tf.float32)
    alpha = PGD_STEP_FACTOR * epsilon / steps if step_size is None else tf.cast(step_size, tf.float32)
    adversarial = images
    if random_start:
        noise = tf.random.stateless_uniform(tf.shape(images), seed=tf.cast(seed, tf.int64), minval=-1.0, maxval=1.0)
        adversarial = project(images + epsilon * noise, images, epsilon, pixel_range)

    def ascend(step, adversarial):
        gradient = input_gradient(model, adversarial, labels, from_logits)
        return step + 1, project(adversarial + alpha * tf.sign(gradient), images, epsilon, pixel_range)

    # A graph loop (one copy of the gradient, however many steps) inside a tf.function; a Python loop when eager.
    _, adversarial = tf.while_loop(lambda step, _: step < steps, ascend, (tf.constant(0), adversarial))
    return adversarial


ATTACKS = ("fgsm", "pgd")


def compiled_attack(model: keras.Model, attack: str, *, steps: int = 10, from_logits: bool = True):
    """`attack` on `model` as one `tf.function` of (images, labels, epsilon, seed) -> adversarial images.

    Epsilon and the seed are tensor arguments, so one trace serves every epsilon and batch. Not XLA-compiled: on
    CPU TensorFlow's own (oneDNN) convolution kernels run these gradient steps faster than XLA's.
    """
    if attack not in ATTACKS:
        raise ValueError(f"unknown attack {attack!r}; choose one of {', '.join(ATTACKS)}")
    if attack == "fgsm":
        return tf.function(lambda x, y, epsilon, seed: fgsm(model, x, y, epsilon, from_logits=from_logits),
                           reduce_retracing=True)  # the last, smaller batch reuses the trace
    return tf.function(lambda x, y, epsilon, seed: pgd(model, x, y, epsilon, steps=steps, seed=seed,
                                                       from_logits=from_logits), reduce_retracing=True)


def attack_batches(attack_fn, images: np.ndarray, labels: np.ndarray, epsilon: float, *, seed: int = 0,
                   batch_size: int = 500) -> np.ndarray:
    """Adversarial versions (N, 28, 28, 1) of a whole array of images, `batch_size` at a time, as NumPy.

    `attack_fn` comes from `compiled_attack`. Batch i draws its PGD start from the stateless seed (seed, i), so
    an image's adversarial version depends on the seed and its batch, never on what ran before in the process.
    """
    out = [attack_fn(tf.constant(images[start:start + batch_size], tf.float32),
                     tf.constant(labels[start:start + batch_size], tf.int64), tf.constant(epsilon, tf.float32),
                     tf.constant([seed, i], tf.int64)).numpy()
           for i, start in enumerate(range(0, len(images), batch_size))]
    return np.concatenate(out) if out else np.zeros(images.shape, np.float32)
