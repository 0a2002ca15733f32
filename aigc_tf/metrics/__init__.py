"""Measuring generated samples: a project-trained classifier and the scores computed from it.

`classifier` trains (once, cached) the small MNIST classifier whose penultimate features and softmax play the role
Inception-v3 plays for ImageNet; `scores` holds the formulas (Frechet distance, Inception-style score) as pure
NumPy functions, apart from training code as in TF-GAN; `copies` those that see what FID misses (KID, precision /
recall, nearest training digits); `image_quality` puts them together into one report against real-data references.
"""

from aigc_tf.metrics.copies import kernel_inception_distance, nearest_neighbours, precision_recall
from aigc_tf.metrics.scores import frechet_distance, gaussian_stats, inception_score

__all__ = ["frechet_distance", "gaussian_stats", "inception_score", "kernel_inception_distance", "nearest_neighbours",
           "precision_recall"]
