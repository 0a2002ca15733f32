"""Measuring generated samples: a project-trained classifier and the scores computed from it.

`classifier` trains (once, cached) the small MNIST classifier whose penultimate features and softmax play the role
Inception-v3 plays for ImageNet; `scores` holds the formulas (Frechet distance, Inception-style score) as pure
NumPy functions, apart from training code as in TF-GAN.
"""

from aigc_tf.metrics.scores import frechet_distance, gaussian_stats, inception_score

__all__ = ["frechet_distance", "gaussian_stats", "inception_score"]
