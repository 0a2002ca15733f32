"""One report of how close generated images are to real ones, on the same yardstick for every image model.

The real-data references make the numbers readable: `real_fid_floor` is the FID between two disjoint halves of the
real test split (or of the validation split, `split="validation"`, which every recipe choice is scored on) (what a perfect generator would score at this sample size; FID is biased upwards for small samples),
and `real_inception_score` the score of real test images. Generated samples are compared with the same half (B) and
the same sample count as the floor, so `fid - real_fid_floor` is the generator's own gap.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from aigc_tf.data import images as image_data
from aigc_tf.metrics import scores
from aigc_tf.metrics.classifier import load_classifier


def real_halves(dataset: str, source: str | None, seed: int, data_dir: Path | None = None, split: str = "test"):
    """Two disjoint, equally sized random halves of `split` ("test" for a report, "validation" for a choice), and
    the resolved source."""
    test = image_data.load_arrays(dataset, split, source, data_dir)
    order = np.random.default_rng(seed).permutation(len(test))
    half = len(test) // 2
    to_unit = lambda idx: test.images[idx].astype(np.float32) / 255.0  # noqa: E731
    return to_unit(order[:half]), to_unit(order[half:2 * half]), test.source


def sample_quality(generate_fn, dataset: str = "mnist", source: str | None = None, seed: int = 0,
                   data_dir: Path | None = None, verbose: int = 2, split: str = "test") -> dict:
    """FID and Inception-style score of `generate_fn(n) -> images (n, 28, 28, 1) in [0, 1]` with references drawn
    from `split`: "validation" when the number chooses a recipe, "test" (once) when it is reported."""
    half_a, half_b, source = real_halves(dataset, source, seed, data_dir, split)
    classifier = load_classifier(dataset, source, data_dir, verbose=verbose)
    num_samples = len(half_a)
    generated = np.asarray(generate_fn(num_samples), np.float32)
    features_a, probs_a = classifier.features_and_probabilities(half_a)
    features_b, _ = classifier.features_and_probabilities(half_b)
    features_g, probs_g = classifier.features_and_probabilities(generated)
    inception, inception_std = scores.inception_score(probs_g)
    real_inception, _ = scores.inception_score(probs_a)
    return {
        "fid": scores.frechet_distance_from_features(features_g, features_b),
        "real_fid_floor": scores.frechet_distance_from_features(features_a, features_b),
        "inception_score": inception,
        "inception_score_std": inception_std,
        "real_inception_score": real_inception,
        "num_samples": num_samples,
        "class_histogram": np.bincount(probs_g.argmax(axis=1), minlength=probs_g.shape[1]).tolist(),
        "classifier_test_accuracy": classifier.test_accuracy,
        "dataset": dataset,
        "source": source,
    }
