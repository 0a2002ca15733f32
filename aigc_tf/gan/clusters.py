"""k-means clusters of the training digits: groups for the GAN to draw from, found without labels.

A generator fed only Gaussian noise maps one connected space onto the data, so between two kinds of digit it also
draws the shapes in between, half 4 and half 9 (a continuous map cannot tear the noise space apart; Khayatkhoei et
al. 2018, "Disconnected Manifold Learning for Generative Adversarial Networks"). Grouping the training digits by
k-means on their pixels, and conditioning G and D on the group, gives G a separate piece of noise space for each
group: D judges every image together with its cluster, so a blend of two clusters is rejected by both. It is
the label-free counterpart of the conditional GAN (Sage et al. 2018, "Logo Synthesis and Manipulation with
Clustered Generative Adversarial Networks"; Liu et al. 2020, "Diverse Image Generation via Self-Conditioned GANs",
which cluster D's features instead of pixels). The GAN stays unconditional to its users: the noise itself picks a
cluster with its share of the training digits (`aigc_tf.gan.models.ClusterCode`), and no label is ever read.

The clusters are fitted once when a run starts, with the run's seed, and stored in the run folder
(`clusters.npz`): a resumed run, and every later reader of the run, sees the same groups.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from aigc_tf import AigcError

CLUSTERS_FILE = "clusters.npz"


@dataclasses.dataclass(frozen=True)
class Clusters:
    centroids: np.ndarray  # (K, 784) float32, pixels in [0, 1]: the mean digit of each cluster
    assignments: np.ndarray  # (N,) int32: the cluster of each training digit, in the training set's order

    @property
    def shares(self) -> np.ndarray:
        """(K,) float64: each cluster's share of the training digits, the probability G draws it with."""
        return np.bincount(self.assignments, minlength=len(self.centroids)) / len(self.assignments)


def fit_clusters(images: np.ndarray, k: int, seed: int) -> Clusters:
    """k-means (scikit-learn's, k-means++ seeding) on the flattened pixels of uint8 images (N, 28, 28, 1)."""
    from sklearn.cluster import KMeans

    if not 1 <= k <= len(images):
        raise AigcError(f"`clusters` must be between 1 and the {len(images)} training images, got {k}")
    pixels = _flat(images)
    kmeans = KMeans(n_clusters=k, n_init=1, random_state=seed).fit(pixels)
    return Clusters(kmeans.cluster_centers_.astype(np.float32), kmeans.labels_.astype(np.int32))


def assign(images01: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """The nearest centroid (N,) int32 of images (N, 28, 28, 1) in [0, 1]: the cluster D judges an image with."""
    pixels = images01.reshape(len(images01), -1).astype(np.float32)
    distances = (pixels**2).sum(1)[:, None] - 2.0 * pixels @ centroids.T + (centroids**2).sum(1)[None, :]
    return distances.argmin(axis=1).astype(np.int32)


def load_or_fit(run_path: Path, images: np.ndarray, k: int, seed: int) -> tuple[Clusters, bool]:
    """The run's clusters, fitted and saved on its first start; returns (clusters, whether they were fitted now)."""
    path = Path(run_path) / CLUSTERS_FILE
    if path.exists():
        clusters = load(run_path)
        if len(clusters.centroids) != k or len(clusters.assignments) != len(images):
            raise AigcError(f"{path} holds {len(clusters.centroids)} clusters of {len(clusters.assignments)} digits, "
                            f"not {k} of {len(images)}; train into a new --out folder")
        return clusters, False
    clusters = fit_clusters(images, k, seed)
    partial = path.with_name(path.stem + ".partial.npz")
    np.savez(partial, centroids=clusters.centroids, assignments=clusters.assignments)
    partial.replace(path)
    return clusters, True


def load(run_path: Path) -> Clusters:
    path = Path(run_path) / CLUSTERS_FILE
    try:
        with np.load(path) as arrays:
            return Clusters(arrays["centroids"], arrays["assignments"])
    except FileNotFoundError:
        raise AigcError(f"{path} is missing: this run's clusters were not saved; train a new GAN run") from None
    except (OSError, ValueError, KeyError) as err:
        raise AigcError(f"{path} is unreadable ({err}); train a new GAN run") from None


def _flat(images: np.ndarray) -> np.ndarray:
    return images.reshape(len(images), -1).astype(np.float32) / 255.0
