"""Scores that see what FID misses: KID, precision / recall, and nearest training digits.

FID compresses each image set into one Gaussian, so it cannot tell a generator that copies its training digits from
one that makes new ones, nor one that covers every class but only a few styles within each; and at a thousand
samples it is biased upwards. Three complements, as pure NumPy functions on features (N, D) or flattened pixels:

- **KID** (Binkowski et al. 2018, "Demystifying MMD GANs"): the squared maximum mean discrepancy with the cubic
  polynomial kernel k(x, y) = (x.y / d + 1)^3, estimated without bias, so two samples of one distribution score 0
  on average at any sample size.
- **Precision and recall** (Kynkaanniemi et al. 2019, "Improved precision and recall metric for assessing generative
  models"): each set's manifold is the union of balls around its points, of radius the distance to the point's k-th
  nearest neighbour in the same set. Precision is the fraction of generated samples inside the real manifold
  (quality), recall the fraction of real samples inside the generated one (variety: a generator that drops half the
  styles has recall near 0.5, however sharp its digits).
- **Nearest training digits**: each sample's distance to the closest image the generator trained on. A memorising
  generator shows distances no unseen real digit reaches; `near_copies` turns that into a fraction, with the
  threshold taken from real unseen digits so that it means the same for any dataset.
"""

from __future__ import annotations

import numpy as np


def polynomial_kernel(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """k(x, y) = (x.y / d + 1)^3 for every pair of rows of x (N, D) and y (M, D): the (N, M) kernel matrix.

    The kernel of KID: cubic, so it compares the first three moments of the feature distributions, and scaled by the
    dimension d so that its values do not grow with the size of the feature layer.
    """
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    return (x @ y.T / x.shape[1] + 1.0) ** 3


def mmd2_unbiased(k_xx: np.ndarray, k_yy: np.ndarray, k_xy: np.ndarray) -> float:
    """The unbiased estimate of MMD^2 from the kernel matrices of samples x (m) and y (n):

        MMD^2_u = sum_{i != j} k(x_i, x_j) / (m (m - 1)) + sum_{i != j} k(y_i, y_j) / (n (n - 1))
                  - 2 sum_{i, j} k(x_i, y_j) / (m n)

    Leaving out the diagonals k(x_i, x_i) is what removes the bias: a point compared with itself is always close.
    The estimate can therefore be slightly negative when the two distributions are equal.
    """
    m, n = len(k_xx), len(k_yy)
    within_x = (k_xx.sum() - np.trace(k_xx)) / (m * (m - 1))
    within_y = (k_yy.sum() - np.trace(k_yy)) / (n * (n - 1))
    return float(within_x + within_y - 2 * k_xy.mean())


def kernel_inception_distance(features_x: np.ndarray, features_y: np.ndarray, num_subsets: int = 100,
                              max_subset_size: int = 1000, seed: int = 0) -> tuple[float, float]:
    """KID: mean and standard deviation of `mmd2_unbiased` with `polynomial_kernel` over random subsets.

    As in the reference implementations (Binkowski et al.'s `polynomial_mmd_averages`, clean-fid), each of the
    `num_subsets` draws takes min(n_x, n_y, max_subset_size) rows of each set without replacement, with a fixed
    `seed`. The kernel matrices of the full sets are computed once and each subset reads its block from them.
    A subset as large as the set is the set itself, so every draw gives the same value and the std is 0: pass a
    smaller `max_subset_size` to see a spread.
    """
    features_x, features_y = np.asarray(features_x, np.float64), np.asarray(features_y, np.float64)
    if features_x.ndim != 2 or features_y.ndim != 2 or features_x.shape[1] != features_y.shape[1]:
        raise ValueError(f"need features (N, D) and (M, D), got {features_x.shape} and {features_y.shape}")
    size = min(len(features_x), len(features_y), max_subset_size)
    if size < 2:
        raise ValueError(f"KID needs at least 2 samples per subset, got {size}")
    k_xx = polynomial_kernel(features_x, features_x)
    k_yy = polynomial_kernel(features_y, features_y)
    k_xy = polynomial_kernel(features_x, features_y)
    rng = np.random.default_rng(seed)
    # A subset as 0/1 indicator rows u (S, N): its kernel sum is u K u^T, its diagonal sum u . diag(K); all subsets
    # in three matrix products instead of gathering S blocks of size x size.
    u = np.zeros((num_subsets, len(features_x)))
    v = np.zeros((num_subsets, len(features_y)))
    for s in range(num_subsets):
        u[s, rng.choice(len(features_x), size, replace=False)] = 1.0
        v[s, rng.choice(len(features_y), size, replace=False)] = 1.0
    sum_xx, sum_yy, sum_xy = ((a @ k * b).sum(1) for a, k, b in ((u, k_xx, u), (v, k_yy, v), (u, k_xy, v)))
    values = ((sum_xx - u @ np.diag(k_xx)) / (size * (size - 1)) + (sum_yy - v @ np.diag(k_yy)) / (size * (size - 1))
              - 2 * sum_xy / size**2)  # mmd2_unbiased of each subset
    return float(np.mean(values)), float(np.std(values))


def pairwise_distances(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Euclidean distances (N, M) between the rows of x (N, D) and y (M, D).

    |x - y|^2 = |x|^2 + |y|^2 - 2 x.y, one matrix product instead of an (N, M, D) array of differences, in the
    inputs' precision (float32 halves the time of the 784-pixel search); rounding can make a zero come out as a tiny
    negative, hence the clip.
    """
    x, y = np.asarray(x), np.asarray(y)
    squared = (x * x).sum(1)[:, None] + (y * y).sum(1)[None, :] - 2 * x @ y.T
    return np.sqrt(np.clip(squared, 0.0, None))


def nearest_neighbours(queries: np.ndarray, references: np.ndarray, k: int = 1, exclude_self: bool = False,
                       chunk_size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """Distances (N,) and indices (N,) of each query's k-th nearest reference (k = 1: the nearest).

    Rows are flattened, so images (N, 28, 28, 1) compare as 784-dimensional pixel vectors. `exclude_self` is for a
    set against itself (queries is references): a point is not its own neighbour. The queries go in chunks of
    `chunk_size`, so memory stays at chunk_size x M distances whatever the size of the query set. The search runs
    in float32; the returned distances are recomputed exactly (float64 differences), so a copy measures 0, not the
    ~0.03 that float32 cancellation in |x|^2 + |y|^2 - 2 x.y leaves.
    """
    queries = np.asarray(queries, np.float32).reshape(len(queries), -1)
    references = np.asarray(references, np.float32).reshape(len(references), -1)
    if queries.shape[1] != references.shape[1]:
        raise ValueError(f"queries have {queries.shape[1]} values per row, references {references.shape[1]}")
    if not 1 <= k <= len(references) - int(exclude_self):
        raise ValueError(f"k = {k} needs more than {len(references)} references")
    indices = np.empty(len(queries), np.int64)
    for start in range(0, len(queries), chunk_size):
        block = pairwise_distances(queries[start:start + chunk_size], references)  # (chunk, M)
        if exclude_self:
            rows = np.arange(len(block))
            block[rows, rows + start] = np.inf
        indices[start:start + len(block)] = np.argpartition(block, k - 1, axis=1)[:, k - 1]
    differences = queries.astype(np.float64) - references[indices].astype(np.float64)
    return np.sqrt((differences ** 2).sum(1)), indices


def manifold_coverage(manifold: np.ndarray, queries: np.ndarray, k: int = 3) -> float:
    """The fraction of `queries` inside the k-NN manifold of `manifold`: the union over its points m of the balls
    |q - m| <= (distance from m to its k-th nearest neighbour in `manifold`)."""
    manifold, queries = np.asarray(manifold, np.float64), np.asarray(queries, np.float64)
    radii, _ = nearest_neighbours(manifold, manifold, k=k, exclude_self=True)  # (M,)
    inside = np.concatenate([(pairwise_distances(chunk, manifold) <= radii[None, :]).any(axis=1)
                             for chunk in np.array_split(queries, max(1, len(queries) // 256))])
    return float(inside.mean())


def precision_recall(real_features: np.ndarray, generated_features: np.ndarray, k: int = 3) -> tuple[float, float]:
    """Improved precision and recall (Kynkaanniemi et al. 2019), with the paper's k = 3.

    precision = fraction of generated samples inside the real manifold, recall = fraction of real samples inside the
    generated manifold (`manifold_coverage`). Both are 1 when the two sets cover each other.
    """
    return (manifold_coverage(real_features, generated_features, k),
            manifold_coverage(generated_features, real_features, k))


def near_copies(sample_distances: np.ndarray, calibration_distances: np.ndarray, reference_distances: np.ndarray,
                percentile: float = 1.0) -> dict:
    """Summarise nearest-training distances: how close samples come to training digits, judged by real digits.

    Args:
        sample_distances: each generated sample's distance to its nearest training digit.
        calibration_distances: the same for real digits the generator never saw; their `percentile`-th percentile
            is the threshold: a sample closer than that is a near copy (closer than unseen digits almost ever get).
        reference_distances: the same for other unseen real digits, scored against that threshold: what the
            near-copy fraction of a generator of new digits looks like (about percentile / 100).

    In pixels, digits with little ink (thin 1s) are close to many others, so the nearest pairs are mostly 1s, for
    real digits as for samples; the threshold, taken from real digits, carries the same lean, so the fraction is a
    fair comparison overall but not class by class.
    """
    sample_distances = np.asarray(sample_distances, np.float64)
    reference_distances = np.asarray(reference_distances, np.float64)
    threshold = float(np.percentile(calibration_distances, percentile))
    return {
        "median": float(np.median(sample_distances)),
        "p5": float(np.percentile(sample_distances, 5)),
        "near_copy_fraction": float(np.mean(sample_distances < threshold)),
        "near_copy_threshold": threshold,
        "real_median": float(np.median(reference_distances)),
        "real_p5": float(np.percentile(reference_distances, 5)),
        "real_near_copy_fraction": float(np.mean(reference_distances < threshold)),
    }
