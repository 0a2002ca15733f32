"""Differentiable augmentation (DiffAugment; Zhao et al. 2020, "Differentiable Augmentation for Data-Efficient GAN
Training"): the seeds' "data augmentation", applied where a GAN needs it.

With ~8,000 training digits D memorises the real set and its verdicts stop teaching G anything. Augmenting only
the real images would teach G to draw augmented digits (shifted, cut out). DiffAugment instead applies the same
random transforms to *every* image D sees, real and generated, in D's update and in G's, and keeps each transform
differentiable, so G's gradient flows back through the augmentation to G. D then has to judge a digit whatever the
shift, cut-out or contrast, and cannot memorise pixels.

Every transform is built from matrix products, masks and elementwise arithmetic: differentiable, XLA-compilable,
shape-preserving, and driven by a stateless seed, so the same seed gives the same augmentation (a resumed run
redraws exactly what an uninterrupted one would).

Images are (B, H, W, 1) in [-1, 1], -1 the background.
"""

from __future__ import annotations

import tensorflow as tf

TRANSFORMS = ("translation", "cutout", "color")
DEFAULT_POLICY = "translation,cutout,color"
TRANSLATION_RATIO = 0.125  # shift by up to 1/8 of the side, rounded: 4 pixels of 28 (the paper's value)
CUTOUT_RATIO = 0.5  # a square half the side, as in the paper
# Stateless random ops pick their algorithm per device by default, and XLA's pick draws other numbers than the
# CPU kernels': naming it (and drawing integers, see _uniform) makes the XLA-compiled step and an eager call agree.
ALGORITHM = "philox"


def parse_policy(policy: str) -> tuple[str, ...]:
    """"translation,cutout" -> ("translation", "cutout"); "" or "none" -> (). Unknown names raise ValueError."""
    names = tuple(name.strip() for name in policy.split(",") if name.strip() and name.strip() != "none")
    unknown = [name for name in names if name not in TRANSFORMS]
    if unknown:
        raise ValueError(f"unknown augmentation {', '.join(unknown)}; choose from {', '.join(TRANSFORMS)} "
                         "(comma-separated), or none")
    return names


def _split(seed, num):
    """`num` new stateless seeds from one, with the same algorithm on every device (see ALGORITHM)."""
    return tf.random.experimental.stateless_split(seed, num=num, alg=ALGORITHM)


def _uniform(shape, seed, low, high, dtype):
    """U(low, high) floats made from integer draws: XLA and the CPU kernels agree on those, not on float ones."""
    resolution = 2**24
    draws = tf.random.stateless_uniform(shape, seed, 0, resolution, dtype=tf.int32, alg=ALGORITHM)
    return tf.cast(low + (high - low) * tf.cast(draws, tf.float32) / resolution, dtype)


def diff_augment(images: tf.Tensor, policy: str | tuple[str, ...], seed: tf.Tensor) -> tf.Tensor:
    """Apply the transforms of `policy` in order, each with its own random draw per image.

    `seed` is an int32/int64 tensor of shape (2,) (a stateless seed); the result depends only on it and the images.
    """
    names = parse_policy(policy) if isinstance(policy, str) else policy
    seeds = _split(tf.cast(seed, tf.int64), max(len(names), 1))
    for index, name in enumerate(names):
        images = _TRANSFORM_FNS[name](images, seeds[index])
    return images


def _color(images, seed):
    """Brightness: add U(-0.5, 0.5); contrast: scale the distance to the image's mean by U(0.5, 1.5).

    The paper's values, on the same [-1, 1] range. (Its colour transform also changes saturation, which grey digits
    do not have.)
    """
    batch = tf.shape(images)[0]
    brightness_seed, contrast_seed = tf.unstack(_split(seed, 2))
    images = images + _uniform([batch, 1, 1, 1], brightness_seed, -0.5, 0.5, images.dtype)
    contrast = _uniform([batch, 1, 1, 1], contrast_seed, 0.5, 1.5, images.dtype)
    mean = tf.reduce_mean(images, axis=[1, 2, 3], keepdims=True)
    return (images - mean) * contrast + mean


def _shift_matrices(shifts, size, dtype):
    """(B,) integer shifts -> (B, size, size) matrices S with (S @ v)[i] = v[i - shift], zero where out of range."""
    rows = tf.range(size)[None, :, None]  # (1, size, 1): output index i
    cols = tf.range(size)[None, None, :]  # (1, 1, size): input index j
    return tf.cast(tf.equal(cols, rows - shifts[:, None, None]), dtype)


def _translation(images, seed):
    """Shift each image by up to TRANSLATION_RATIO of its side in x and y, filling with background (-1).

    Done as S_y @ image @ S_x^T with one-hot shift matrices: a gather written as matrix products, so the gradient
    to the image is the transposed shift and XLA sees two small batched matmuls.
    """
    height, width = images.shape[1], images.shape[2]
    batch = tf.shape(images)[0]
    max_y, max_x = int(height * TRANSLATION_RATIO + 0.5), int(width * TRANSLATION_RATIO + 0.5)
    y_seed, x_seed = tf.unstack(_split(seed, 2))
    dy = tf.random.stateless_uniform([batch], y_seed, -max_y, max_y + 1, dtype=tf.int32, alg=ALGORITHM)
    dx = tf.random.stateless_uniform([batch], x_seed, -max_x, max_x + 1, dtype=tf.int32, alg=ALGORITHM)
    shift_y = _shift_matrices(dy, height, images.dtype)  # (B, H, H)
    shift_x = _shift_matrices(dx, width, images.dtype)  # (B, W, W)
    shifted = tf.einsum("bij,bjkc,blk->bilc", shift_y, images + 1.0, shift_x)  # zeros come in as background
    return shifted - 1.0


def _cutout(images, seed):
    """Set a random square of CUTOUT_RATIO of the side to 0 (mid-grey), per image, as in the paper."""
    height, width = images.shape[1], images.shape[2]
    batch = tf.shape(images)[0]
    cut_h, cut_w = int(height * CUTOUT_RATIO + 0.5), int(width * CUTOUT_RATIO + 0.5)
    y_seed, x_seed = tf.unstack(_split(seed, 2))
    # The square's corner, so that its centre can be anywhere in the image (it may hang over the edge).
    top = tf.random.stateless_uniform([batch, 1, 1], y_seed, 0, height + (1 - cut_h % 2), dtype=tf.int32, alg=ALGORITHM) - cut_h // 2
    left = tf.random.stateless_uniform([batch, 1, 1], x_seed, 0, width + (1 - cut_w % 2), dtype=tf.int32, alg=ALGORITHM) - cut_w // 2
    rows = tf.range(height)[None, :, None]
    cols = tf.range(width)[None, None, :]
    inside = (rows >= top) & (rows < top + cut_h) & (cols >= left) & (cols < left + cut_w)  # (B, H, W)
    keep = tf.cast(tf.logical_not(inside), images.dtype)[..., None]
    return images * keep


_TRANSFORM_FNS = {"translation": _translation, "cutout": _cutout, "color": _color}


def maybe_augment(images: tf.Tensor, policy: tuple[str, ...], seeds, which: int) -> tf.Tensor:
    """The images as D sees them: augmented with stateless seed `seeds[which]` (of (2, 2): one for the real batch,
    one for the fakes) when the recipe augments, else unchanged."""
    return diff_augment(images, policy, seeds[which]) if policy else images
