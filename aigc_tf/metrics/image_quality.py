"""One report of how close generated images are to real ones, on the same yardstick for every image model.

The real-data references make the numbers readable: `real_fid_floor` is the FID between two disjoint halves of the
real test split (what a perfect generator would score at this sample size; FID is biased upwards for small samples),
and `real_inception_score` the score of real test images. Recipe choices are scored on the validation split instead
(`split="validation"`: digits held out of training), so the test split is used once, for the reported numbers. Generated samples are compared with the same half (B) and
the same sample count as the floor, so `fid - real_fid_floor` is the generator's own gap.

FID cannot see a generator that copies its training digits, or one that keeps every class but few styles in each.
Beside it the report has KID (`real_kid_floor` for half A against half B), precision / recall (`real_precision`,
`real_recall`) and a memorisation check: each sample's nearest training digit, in pixels and in features, against
what unseen real digits score (`copies_and_variety`, formulas in `aigc_tf.metrics.copies`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from aigc_tf.data import images as image_data
from aigc_tf.metrics import copies, scores
from aigc_tf.metrics.classifier import _content_hash, load_classifier

COPIES_FIGURE = "nearest_copies.png"


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
        **copies_and_variety(classifier, generated, half_a, half_b, features_g, features_a, features_b,
                             training_digits(dataset, source, data_dir)),
        "num_samples": num_samples,
        "class_histogram": np.bincount(probs_g.argmax(axis=1), minlength=probs_g.shape[1]).tolist(),
        "classifier_test_accuracy": classifier.test_accuracy,
        "dataset": dataset,
        "source": source,
    }


def training_digits(dataset: str, source: str | None, data_dir: Path | None = None) -> np.ndarray:
    """The digits a generator trains on, as float32 in [0, 1], (N, 28, 28, 1): what its samples must not copy."""
    return image_data.load_arrays(dataset, "train", source, data_dir).images.astype(np.float32) / 255.0


_REAL_REFERENCE: dict[str, dict] = {}  # the last one only: `gan eval` scores a truncated run twice on the same data


def real_reference(classifier, half_a, half_b, features_a, features_b, train_images) -> dict:
    """Everything `copies_and_variety` needs that does not depend on the generator: the real-vs-real KID and
    precision / recall, the training digits' features, and each real half's distances to its nearest training
    digit in pixels and features. Kept for the last data and classifier seen (keyed by a hash of their contents), so
    scoring a second generator against the same data (`without_truncation`) does not search again."""
    key = _content_hash(classifier.model, half_a, half_b, train_images)
    if key not in _REAL_REFERENCE:
        train_features, _ = classifier.features_and_probabilities(train_images)
        precision, recall = copies.precision_recall(features_b, features_a)
        _REAL_REFERENCE.clear()
        _REAL_REFERENCE[key] = {
            "kid": copies.kernel_inception_distance(features_a, features_b, max_subset_size=len(features_a) // 2)[0],
            "precision": precision, "recall": recall, "train_features": train_features,
            "pixel": [copies.nearest_neighbours(x, train_images)[0] for x in (half_a, half_b)],
            "feature": [copies.nearest_neighbours(x, train_features)[0] for x in (features_a, features_b)]}
    return _REAL_REFERENCE[key]


def copies_and_variety(classifier, generated, half_a, half_b, features_g, features_a, features_b,
                       train_images, num_pairs: int = 8) -> dict:
    """KID, precision / recall and the memorisation check (`aigc_tf.metrics.copies`), each beside its real-data
    reference, the way `fid` sits beside `real_fid_floor`.

    Generated samples are compared with half B, the reference is half A against half B at the same sample count.
    KID subsets hold half of the samples: subsets of min(n, 1000) would each be the whole set at n = 982 and give
    a spread of exactly 0. For memorisation every image is matched to its nearest training digit in pixel space
    (L2 on [0, 1] pixels) and in the classifier's feature space; half A's distances set the near-copy threshold
    (their 1st percentile) and half B's show what unseen real digits score against it. `closest_pairs` names the
    `num_pairs` samples nearest to a training digit in pixels, for `save_nearest_copies`.
    """
    real = real_reference(classifier, half_a, half_b, features_a, features_b, train_images)
    kid, kid_std = copies.kernel_inception_distance(features_g, features_b, max_subset_size=len(features_g) // 2)
    precision, recall = copies.precision_recall(features_b, features_g)
    memorisation = {"train_digits": len(train_images)}
    for space, queries, train in (("pixel", generated, train_images),
                                  ("feature", features_g, real["train_features"])):
        distances, nearest = copies.nearest_neighbours(queries, train)
        memorisation[space] = copies.near_copies(distances, *real[space])
        if space == "pixel":
            closest = np.argsort(distances)[:num_pairs]
            memorisation["closest_pairs"] = [{"sample": int(i), "train_index": int(nearest[i]),
                                              "pixel_distance": float(distances[i])} for i in closest]
    return {"kid": kid, "kid_std": kid_std, "real_kid_floor": real["kid"],
            "precision": precision, "recall": recall, "real_precision": real["precision"],
            "real_recall": real["recall"], "memorisation": memorisation}


def save_nearest_copies(generated: np.ndarray, report: dict, path: Path, train_images: np.ndarray | None = None,
                        data_dir: Path | None = None) -> Path:
    """Draw the closest pairs of a `sample_quality` report: each sample above its nearest training digit, the pixel
    distance in the title. Copies look identical; for comparison, unseen real digits rarely come closer than the
    report's `memorisation.pixel.near_copy_threshold`."""
    from matplotlib.figure import Figure

    from aigc_tf.plots import show_grid

    pairs = report["memorisation"]["closest_pairs"]
    if train_images is None:
        train_images = training_digits(report["dataset"], report["source"], data_dir)
    threshold = report["memorisation"]["pixel"]["near_copy_threshold"]
    fig = Figure(figsize=(1.3 * len(pairs), 3.2))
    for ax, pair in zip(np.atleast_1d(fig.subplots(1, len(pairs))), pairs):
        column = np.stack([generated[pair["sample"]], train_images[pair["train_index"]]])  # (2, 28, 28, 1)
        show_grid(column, columns=1, title=f"d={pair['pixel_distance']:.2f}", ax=ax, scale=2)
    fig.suptitle(f"samples (top) and their nearest training digits; near copy if d < {threshold:.2f}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return Path(path)
