"""KID, precision / recall and the memorisation check (aigc_tf.metrics.copies), against hand-computed values and
point clouds whose answer is known, then on real digits through `sample_quality` and `gan eval`."""

import json

import numpy as np
import pytest

from aigc_tf.metrics import copies, scores


def test_kid_of_a_hand_computed_case():
    # 1-D features, d = 1, k(a, b) = (a b + 1)^3. Within x = {0, 1}: k(0, 1) = 1, twice, over 2 * 1 pairs -> 1.
    # Within y = {1, 2}: k(1, 2) = 27 -> 27. Across: k(0, 1) = k(0, 2) = 1, k(1, 1) = 8, k(1, 2) = 27, mean 37 / 4.
    x, y = np.array([[0.0], [1.0]]), np.array([[1.0], [2.0]])
    expected = 1 + 27 - 2 * 37 / 4
    kernels = copies.polynomial_kernel(x, x), copies.polynomial_kernel(y, y), copies.polynomial_kernel(x, y)
    assert copies.mmd2_unbiased(*kernels) == pytest.approx(expected)
    # Subsets of min(n, 1000) = 2 are the whole sets: every draw gives the same value, a spread of 0.
    assert copies.kernel_inception_distance(x, y, num_subsets=5) == pytest.approx((expected, 0.0))
    # d scales the dot product: the same points in 2-D with a zero coordinate: k(1, 1) = 1.5^3, k(1, 2) = 2^3.
    x2, y2 = np.hstack([x, 0 * x]), np.hstack([y, 0 * y])
    assert copies.kernel_inception_distance(x2, y2)[0] == pytest.approx(1 + 8 - 2 * (1 + 1 + 3.375 + 8) / 4)


def test_kid_subsets_read_the_right_blocks_of_the_kernel_matrices():
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(50, 4)), rng.normal(size=(40, 4)) + 0.5
    draws, values = np.random.default_rng(3), []
    for _ in range(7):  # the same draws as the function: x's subset, then y's, per subset
        i, j = draws.choice(50, 30, replace=False), draws.choice(40, 30, replace=False)
        values.append(copies.mmd2_unbiased(copies.polynomial_kernel(x[i], x[i]), copies.polynomial_kernel(y[j], y[j]),
                                           copies.polynomial_kernel(x[i], y[j])))
    assert copies.kernel_inception_distance(x, y, num_subsets=7, max_subset_size=30, seed=3) == pytest.approx(
        (np.mean(values), np.std(values)), rel=1e-12)


def test_kid_is_zero_for_one_distribution_and_positive_for_shifted_gaussians():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(500, 16))
    shifted, shifted_std = copies.kernel_inception_distance(x, x + 0.5, max_subset_size=250)
    assert shifted > 10 * shifted_std > 0
    # A set against itself: within a subset pair the same point can sit on both sides, k(x_i, x_i) large, so the
    # estimate dips a little below 0 (by about 2 (k(x, x) - mean k) / n); a fresh sample of the same distribution
    # sits at 0 within the spread of the subsets.
    identical = copies.kernel_inception_distance(x, x, max_subset_size=250)[0]
    assert -0.05 * shifted < identical < 0
    fresh, fresh_std = copies.kernel_inception_distance(x, rng.normal(size=(500, 16)), max_subset_size=250)
    assert abs(fresh) < fresh_std < 0.1 * shifted


def test_kid_is_unbiased_where_fid_is_not():
    """Pairs of small samples of one distribution: KID averages to 0 (within its standard error), FID to clearly
    more than 0; the estimate that keeps the diagonals k(x_i, x_i) (the V-statistic) is biased upwards too."""
    rng = np.random.default_rng(0)
    kid, fid, biased = [], [], []
    for _ in range(40):
        x, y = rng.normal(size=(60, 8)), rng.normal(size=(60, 8))
        kid.append(copies.kernel_inception_distance(x, y)[0])
        fid.append(scores.frechet_distance_from_features(x, y))
        biased.append(copies.polynomial_kernel(x, x).mean() + copies.polynomial_kernel(y, y).mean()
                      - 2 * copies.polynomial_kernel(x, y).mean())

    def standard_error(values):
        return np.std(values) / np.sqrt(len(values))

    assert abs(np.mean(kid)) < 3 * standard_error(kid)
    assert np.mean(fid) > 10 * standard_error(fid)
    assert np.mean(biased) > 10 * standard_error(biased)


def test_nearest_neighbours_match_a_brute_force_search_and_copies_measure_zero():
    rng = np.random.default_rng(0)
    queries, references = rng.uniform(size=(300, 3, 3)), rng.uniform(size=(70, 3, 3))  # flattened to 9 values
    brute = np.linalg.norm(queries.reshape(300, 1, 9) - references.reshape(1, 70, 9), axis=2)
    distances, indices = copies.nearest_neighbours(queries, references, chunk_size=64)
    np.testing.assert_array_equal(indices, brute.argmin(1))
    np.testing.assert_allclose(distances, brute.min(1), rtol=1e-6)

    within = np.linalg.norm(references.reshape(70, 1, 9) - references.reshape(1, 70, 9), axis=2)
    np.fill_diagonal(within, np.inf)
    third, _ = copies.nearest_neighbours(references, references, k=3, exclude_self=True, chunk_size=16)
    np.testing.assert_allclose(third, np.sort(within, axis=1)[:, 2], rtol=1e-6)

    pixels = rng.uniform(size=(20, 28, 28, 1)).astype(np.float32)  # copies in 784 pixels: exactly 0, not ~0.03
    distances, indices = copies.nearest_neighbours(pixels[::-1], pixels)
    assert distances.max() == 0.0 and indices.tolist() == list(range(19, -1, -1))


def test_precision_and_recall_of_a_hand_computed_case():
    # Real 1-D points in two clusters; with k = 1 each ball has radius 1.
    real = np.array([[0.0], [1.0], [2.0], [10.0], [11.0], [12.0]])
    # Generated: two inside the first cluster's balls, 5 (3 from the nearest real point) and 30 outside.
    generated = np.array([[0.5], [1.5], [5.0], [30.0]])
    # Generated radii (k = 1): 0.5 -> 1, 1.5 -> 1, 5 -> 3.5, 30 -> 25. Real 0, 1, 2 are within 1 of 0.5 or 1.5;
    # the outlier's ball |q - 30| <= 25 swallows 10, 11, 12: recall 1 (the metric's known weakness to outliers).
    assert copies.precision_recall(real, generated, k=1) == (0.5, 1.0)
    assert copies.precision_recall(real, generated[:3], k=1) == (2 / 3, 0.5)  # without it: 5 covers 2 <= 3.5 away


def test_a_generator_that_covers_half_the_modes_has_recall_one_half_and_full_precision():
    rng = np.random.default_rng(0)
    centres = 10.0 * rng.normal(size=(10, 2))
    real = np.concatenate([c + 0.1 * rng.normal(size=(100, 2)) for c in centres])
    half_the_modes = np.concatenate([c + 0.1 * rng.normal(size=(200, 2)) for c in centres[:5]])
    precision, recall = copies.precision_recall(real, half_the_modes)
    assert precision > 0.95 and 0.45 <= recall <= 0.55
    everything = np.concatenate([c + 0.1 * rng.normal(size=(100, 2)) for c in centres])
    precision, recall = copies.precision_recall(real, everything)
    assert precision > 0.9 and recall > 0.9
    off = everything + 1000.0  # the right shapes in the wrong place
    assert copies.precision_recall(real, off) == (0.0, 0.0)


def test_near_copies_summary_by_hand():
    calibration = np.arange(1.0, 102.0)  # 1st percentile = 2.0
    report = copies.near_copies(np.array([0.0, 0.0, 1.0, 5.0]), calibration, np.array([1.5, 3.0, 4.0, 9.0]))
    assert report["near_copy_threshold"] == pytest.approx(2.0)
    assert report["near_copy_fraction"] == 0.75 and report["real_near_copy_fraction"] == 0.25
    assert report["median"] == 0.5 and report["real_median"] == 3.5
    assert report["p5"] == 0.0 and report["real_p5"] == pytest.approx(1.5 + 0.15 * 1.5)


@pytest.fixture(scope="module")
def real_digits():
    from aigc_tf.metrics.image_quality import real_halves, training_digits

    half_a, half_b, source = real_halves("mnist", None, seed=0)
    return half_a, half_b, training_digits("mnist", source)


@pytest.mark.slow
def test_a_generator_of_training_digits_is_flagged_and_real_test_digits_are_not(real_digits, tmp_path):
    from PIL import Image

    from aigc_tf.metrics.image_quality import sample_quality, save_nearest_copies

    _, half_b, train = real_digits
    picks = np.random.default_rng(0).permutation(len(train))
    copier = sample_quality(lambda n: train[picks[:n]], verbose=0)
    for space in ("pixel", "feature"):
        assert copier["memorisation"][space]["near_copy_fraction"] == 1.0
        assert copier["memorisation"][space]["median"] < 1e-3
    assert copier["memorisation"]["pixel"]["median"] == 0.0
    assert all(p["pixel_distance"] == 0.0 and p["train_index"] == picks[p["sample"]]
               for p in copier["memorisation"]["closest_pairs"])

    unseen = sample_quality(lambda n: half_b[:n], verbose=0)  # real test digits, the generator's ideal
    for space in ("pixel", "feature"):
        memorised = unseen["memorisation"][space]
        assert memorised["near_copy_fraction"] < 0.05 and memorised["median"] > 2 * memorised["near_copy_threshold"]
        assert copier["memorisation"][space]["real_near_copy_fraction"] == memorised["near_copy_fraction"]
    assert unseen["precision"] == unseen["recall"] == 1.0  # the compared set itself: each point in its own ball
    assert 0.8 < unseen["real_precision"] < 1 and 0.8 < unseen["real_recall"] < 1
    # Why the check is needed: the copier looks like real data to every distribution score (measured FID 11.7
    # against a floor of 12.4, KID 0.4 +- 1.3, precision / recall 0.90 / 0.89 against 0.89 / 0.91 for real).
    assert copier["fid"] < 1.3 * copier["real_fid_floor"] and copier["kid"] < 2 * copier["kid_std"]
    assert copier["precision"] > 0.8 and copier["recall"] > 0.8

    path = save_nearest_copies(train[picks[:len(half_b)]], copier, tmp_path / "nearest_copies.png", train)
    picture = np.asarray(Image.open(path).convert("L"))
    assert picture.shape[1] > 2 * picture.shape[0] > 0  # a row of eight sample / neighbour columns
    assert 0 < (picture < 128).mean() < 0.9


@pytest.mark.slow
def test_gan_eval_writes_the_new_metrics_and_the_nearest_copies_figure(tiny_gan_run):
    from aigc_tf.gan.evaluate import EVAL_FILE, evaluate_gan

    run_dir = tiny_gan_run[0]
    report = evaluate_gan(run_dir, verbose=0)
    saved = json.loads((run_dir / EVAL_FILE).read_text())
    for key in ("kid", "kid_std", "real_kid_floor", "precision", "recall", "real_precision", "real_recall"):
        assert saved[key] == pytest.approx(report[key])
    # Two epochs of the tiny GAN: far from real digits, far from copying them.
    assert report["kid"] > 100 * max(abs(report["real_kid_floor"]), 1e-3)
    assert report["precision"] < report["real_precision"]
    assert saved["memorisation"]["pixel"]["near_copy_fraction"] == 0.0
    assert (run_dir / "nearest_copies.png").stat().st_size > 1000


@pytest.mark.slow
def test_vae_eval_reports_copies_of_its_prior_samples(tiny_vae_run):
    from aigc_tf.vae.evaluate import EVAL_FILE, evaluate_vae

    run_dir = tiny_vae_run[0]
    report = evaluate_vae(run_dir, verbose=0)
    saved = json.loads((run_dir / EVAL_FILE).read_text())
    assert saved["memorisation"] == report["memorisation"] and saved["kid"] == report["kid"]
    assert report["memorisation"]["train_digits"] == 7035 and len(report["memorisation"]["closest_pairs"]) == 8
    assert 0 <= report["recall"] <= report["real_recall"] + 0.05  # a 3-epoch VAE does not out-cover real digits
    assert (run_dir / "nearest_copies.png").stat().st_size > 1000
