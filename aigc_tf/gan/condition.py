"""What G and D are conditioned on: nothing, the digit labels, or k-means clusters of the training digits.

`GANConfig.condition` names it, and this module is the one place that reads it:

- "none": the plain GAN of Goodfellow et al. 2014. G maps noise to an image, D judges the image alone.
- "digit": the conditional GAN of Mirza & Osindero 2014. G takes [noise, label] and draws that digit; D judges
  [image, label], the real digit's label for real images and the asked-for one for fakes. `aigc-tf gan sample
  --digit 7` draws sevens.
- "cluster" (the default recipe): the same conditioning on `clusters` k-means groups of the training digits,
  found without labels (why, and the fitting itself, in aigc_tf.gan.clusters). G still takes noise alone: its
  first value picks the cluster (`models.ClusterCode`), so to every user it is an unconditional GAN; D judges each
  real digit with its cluster and each fake with the cluster its noise picked.
"""

from __future__ import annotations

import math

import numpy as np

from aigc_tf import AigcError, plots
from aigc_tf.gan import clusters as clustering
from aigc_tf.gan.models import cluster_code, cluster_of

CONDITIONS = ("none", "digit", "cluster")


def check(config) -> None:
    """A one-line error for a condition this module does not know, or clusters it cannot fit."""
    if config.condition not in CONDITIONS:
        raise AigcError(f"unknown `condition` {config.condition!r}; choose one of {', '.join(CONDITIONS)}")
    if config.condition == "cluster" and config.clusters < 1:
        raise AigcError(f"`clusters` must be >= 1 with condition='cluster', got {config.clusters} (no clusters: "
                        "condition='none')")


def generator_takes_labels(config) -> bool:
    """Whether G's input is [noise, label] (the digit), not noise alone."""
    return config.condition == "digit"


def discriminator_classes(config) -> int:
    """How many classes D judges an image with: 0 (the image alone), the digits or the clusters."""
    return {"none": 0, "digit": config.num_classes, "cluster": config.clusters}[config.condition]


def generator_inputs(config, noise, labels):
    """G's input for noise (B, Z) and the batch's labels (B,): [noise, labels] for digits, else noise."""
    return [noise, labels] if generator_takes_labels(config) else noise


def fake_labels(config, generator, noise, real_labels):
    """What D judges the fakes with: the same digits as the real batch, the clusters G drew from the noise, or
    nothing."""
    if config.condition == "cluster":
        return cluster_of(noise, cluster_code(generator).cumulative_shares)  # (B,)
    return real_labels if config.condition == "digit" else None


def judge(config, discriminator, images, labels, training: bool = True):
    """D's logits (B, 1) for images, with their labels or clusters when D is conditioned."""
    return discriminator([images, labels] if discriminator_classes(config) else images, training=training)


def sample_labels(config, num: int, digit: int | None = None) -> np.ndarray | None:
    """The labels to draw `num` samples with: `digit` every time, or 0, 1, 2, ... in turn; None unless G takes
    digits (a clustered G picks its cluster from the noise)."""
    if not generator_takes_labels(config):
        return None
    return np.full(num, digit) if digit is not None else np.arange(num) % config.num_classes


def grid_labels(config) -> np.ndarray | None:
    """The labels of the sample grid for a digit-conditioned G: each row counts 0, 1, 2, ... so columns share a
    digit."""
    if not generator_takes_labels(config):
        return None
    return np.arange(config.grid_size**2) % config.grid_size % config.num_classes


def real_labels(config, run, images: np.ndarray, digits: np.ndarray, chief: bool = True,
                say=print) -> np.ndarray | None:
    """What D judges the training digits with (N,) int32, in the training set's order, or None.

    For clusters: fitted on the run's first start (and saved, with a figure of the cluster means, most common
    first), loaded on a resume; every worker fits the same ones from the same seed, only the chief writes."""
    if config.condition == "digit":
        return digits
    if config.condition != "cluster":
        return None
    if not chief:
        return clustering.fit_clusters(images, config.clusters, config.seed).assignments
    found, fitted = clustering.load_or_fit(run.path, images, config.clusters, config.seed)
    if fitted:
        say(f"Grouped the {len(images)} training digits into {config.clusters} k-means clusters: "
            f"{run.path / clustering.CLUSTERS_FILE}")
        order = np.argsort(-found.shares)
        plots.save_grid(found.centroids[order].reshape(-1, 28, 28, 1), run.path / "clusters.png",
                        columns=int(math.ceil(math.sqrt(len(order)))))
    return found.assignments


def give_shares(config, generators, assignments: np.ndarray) -> None:
    """Tell each clustered G how often to draw each cluster: the clusters' shares of the training digits (a
    restored checkpoint holds the same values)."""
    if config.condition != "cluster":
        return
    shares = np.bincount(assignments, minlength=config.clusters) / len(assignments)
    for generator in generators:
        if generator is not None:
            cluster_code(generator).set_shares(shares)


def labels_of_images(config, images01: np.ndarray, digits: np.ndarray | None, centroids: np.ndarray | None):
    """What D judges given images (N, 28, 28, 1) in [0, 1] with, outside training: their nearest cluster, the
    given digits, or None."""
    if config.condition == "cluster":
        return clustering.assign(images01, centroids)
    return digits if config.condition == "digit" else None
