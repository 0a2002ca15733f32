"""Sample-quality scores computed from a classifier's features and class probabilities.

These are the formulas of FID (Heusel et al. 2017) and the Inception Score (Salimans et al. 2016), applied to the
project's own MNIST classifier instead of Inception-v3 (whose ImageNet features mean little for 28x28 digits and
whose weights are not available offline). Absolute values are therefore not comparable with published
ImageNet-FIDs; compare against the real-data references computed with the same classifier and sample size.
"""

from __future__ import annotations

import numpy as np


def gaussian_stats(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean (D,) and covariance (D, D) of features (N, D), in float64."""
    features = np.asarray(features, np.float64)
    if features.ndim != 2 or len(features) < 2:
        raise ValueError(f"need features of shape (N >= 2, D), got {features.shape}")
    return features.mean(axis=0), np.cov(features, rowvar=False)


def _sqrtm_psd(matrix: np.ndarray) -> np.ndarray:
    values, vectors = np.linalg.eigh((matrix + matrix.T) / 2)
    return (vectors * np.sqrt(np.clip(values, 0, None))) @ vectors.T


def frechet_distance(mu1, sigma1, mu2, sigma2) -> float:
    """d^2 = |mu1 - mu2|^2 + Tr(S1 + S2 - 2 (S1 S2)^(1/2)), the Frechet distance of two Gaussians.

    Tr((S1 S2)^(1/2)) is computed as Tr((S1^(1/2) S2 S1^(1/2))^(1/2)): the same eigenvalues, but of a symmetric
    PSD matrix, so plain `eigh` is exact and stable where `scipy.linalg.sqrtm` of a non-symmetric product can
    return complex noise.
    """
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    sigma1, sigma2 = np.asarray(sigma1, np.float64), np.asarray(sigma2, np.float64)
    root1 = _sqrtm_psd(sigma1)
    middle = root1 @ sigma2 @ root1
    trace_sqrt = np.sqrt(np.clip(np.linalg.eigvalsh((middle + middle.T) / 2), 0, None)).sum()
    distance = np.sum((mu1 - mu2) ** 2) + np.trace(sigma1) + np.trace(sigma2) - 2 * trace_sqrt
    return float(max(distance, 0.0))


def frechet_distance_from_features(features1: np.ndarray, features2: np.ndarray) -> float:
    return frechet_distance(*gaussian_stats(features1), *gaussian_stats(features2))


def inception_score(probabilities: np.ndarray, splits: int = 10, eps: float = 1e-12) -> tuple[float, float]:
    """IS = exp(E_x KL(p(y|x) || p(y))), mean and standard deviation over `splits` chunks.

    High when each sample is classified confidently (low entropy p(y|x)) and the classes are balanced (high
    entropy p(y)); its maximum is the number of classes.
    """
    probs = np.asarray(probabilities, np.float64)
    if probs.ndim != 2:
        raise ValueError(f"need probabilities of shape (N, classes), got {probs.shape}")
    scores = []
    for chunk in np.array_split(probs, splits):
        marginal = chunk.mean(axis=0, keepdims=True)
        kl = np.sum(chunk * (np.log(chunk + eps) - np.log(marginal + eps)), axis=1)
        scores.append(np.exp(kl.mean()))
    return float(np.mean(scores)), float(np.std(scores))
