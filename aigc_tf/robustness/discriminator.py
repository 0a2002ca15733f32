"""What the GAN's discriminator makes of adversarial digits.

A GAN's discriminator D (`aigc_tf.gan`) was trained for one question: does this image look like the training
digits, or like the generator's output? Its sigmoid(logit) is its belief "real". Adversarial digits are built to
change a classifier's answer while looking unchanged to a person; asking D about them asks whether they still look
like data to a network that never saw the classifier. Three references make its answer readable: D on the clean
test digits (real), on the generator's samples (what D learnt to reject), and on random-sign noise of the same
L-infinity size (sign(U(-1, 1)) * epsilon per pixel): if D scores adversarial digits like that noise, it is reacting
to the perturbation's size, not to its adversarial direction.

D is not a detector of adversarial examples and was not trained as one; a low score says only that the image left
the data D knows. With the hinge loss (`GANConfig.loss="hinge"`) sigmoid(logit) is a monotone score rather than a
calibrated probability; the comparison between rows stays meaningful.

D lives only in the run's `tf.train.Checkpoint` (the generator alone is exported), so it is restored by the
training's own code (`aigc_tf.gan.train.GAN.restore`, which asserts that every variable was found: a run written by
another architecture is one clear error rather than a randomly initialised D), and it judges images with what the
run's `condition` says (`aigc_tf.gan.condition`), in the generator's pixel range (`aigc_tf.gan.sample`).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from aigc_tf import AigcError
from aigc_tf.gan import clusters as clustering
from aigc_tf.gan import condition
from aigc_tf.gan.sample import draw, to_generator_range
from aigc_tf.runs import RunFolder


@dataclasses.dataclass
class GANNetworks:
    discriminator: keras.Model
    generator: keras.Model  # the sampling one: the EMA copy when the run keeps one
    config: object
    step: int
    run_dir: Path
    centroids: np.ndarray | None = None  # a clustered GAN's k-means cluster means (K, 784), which D judges with


def load_gan_networks(run_dir: Path) -> GANNetworks:
    """The discriminator and the sampling generator of a GAN run at its latest checkpoint, restored as a resumed
    training run restores them (`GAN.restore`)."""
    from aigc_tf.gan.train import GAN

    run = RunFolder(Path(run_dir))
    if not run.path.is_dir():
        raise AigcError(f"`gan_run` {run.path} does not exist; train one first (`aigc-tf gan train --out {run.path}`)")
    config = run.load_config("gan")
    gan = GAN(config)
    if gan.restore(run.checkpoints) is None:
        raise AigcError(f"{run.path} has no checkpoint yet; train it first (`aigc-tf gan train --out {run.path}`)")
    centroids = clustering.load(run.path).centroids if config.condition == "cluster" else None
    return GANNetworks(gan.discriminator, gan.sampling_generator, config, int(gan.step.numpy()), run.path, centroids)


def realness(gan: GANNetworks, images: np.ndarray, labels: np.ndarray | None = None,
             batch_size: int = 500) -> np.ndarray:
    """D's belief "real", sigmoid(logit) (N,), for images (N, 28, 28, 1) in [0, 1].

    D was trained on the generator's tanh range, so pixels go to [-1, 1] first. A digit-conditioned D also judges
    each image with a label: the digit's true label for test digits, the asked-for one for samples. A clustered D
    judges each image with its nearest k-means cluster, as it judged the training digits.
    """
    labels = condition.labels_of_images(gan.config, images, labels, gan.centroids)
    out = []
    for start in range(0, len(images), batch_size):
        x = to_generator_range(tf.constant(images[start:start + batch_size], tf.float32))
        y = None if labels is None else tf.constant(labels[start:start + batch_size], tf.int32)
        logits = condition.judge(gan.config, gan.discriminator, x, y, training=False)
        out.append(tf.sigmoid(tf.cast(logits, tf.float32))[:, 0].numpy())
    return np.concatenate(out)


def random_sign_noise(images: np.ndarray, epsilon: float, seed: int = 0) -> np.ndarray:
    """images + epsilon * (+1 or -1 per pixel, at random), clipped to [0, 1]: the size of FGSM, no direction."""
    signs = np.sign(np.random.default_rng(seed).uniform(-1.0, 1.0, images.shape)).astype(np.float32)
    return np.clip(images + epsilon * signs, 0.0, 1.0)


def discriminator_report(gan: GANNetworks, images: np.ndarray, labels: np.ndarray,
                         adversarial: dict[tuple[str, float], np.ndarray], epsilons, *, num_samples: int = 1000,
                         seed: int = 0) -> dict:
    """D's mean realness on the clean test digits, on each attack's adversarial digits and on same-size random-sign
    noise at each epsilon, and on `num_samples` of the generator's samples (noise seed `seed`)."""
    samples, sample_labels = draw(gan.generator, gan.config, num_samples, seed)

    def mean_realness(x, y=labels):
        return float(np.mean(realness(gan, x, y)))

    attacks = sorted({attack for attack, _ in adversarial})
    return {
        "run": str(gan.run_dir), "step": gan.step, "loss": gan.config.loss, "condition": gan.config.condition,
        "score": "mean sigmoid(D(x)), D's belief that x is real", "epsilons": list(epsilons),
        "clean": mean_realness(images),
        "generated": mean_realness(samples, sample_labels),
        **{attack: [mean_realness(adversarial[attack, e]) for e in epsilons] for attack in attacks},
        "random_sign_noise": [mean_realness(random_sign_noise(images, e, seed)) for e in epsilons],
    }
