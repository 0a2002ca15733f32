"""Adversarial examples and adversarial training on the project's digits.

A classifier that reads 99% of test digits correctly can be made to misread almost all of them by changing every
pixel by a few percent: the change is invisible to a person and chosen with the classifier's own gradient. This
package shows it, measures it and trains a defence:

- `attacks`: FGSM (Goodfellow et al. 2015) and PGD (Madry et al. 2018) under an L-infinity budget, pure functions
  of a Keras classifier, seeded and batch-wise;
- `evaluate`: accuracy vs epsilon, one curve per attack;
- `train`: adversarial training in a `train_step` override (PGD with few steps, or FGSM with random start);
- `discriminator`: what a trained GAN's discriminator makes of adversarial digits;
- `figures`: the curves and a grid of clean digit / perturbation / adversarial digit;
- `run`: `run_robustness(config, out)`, the one entry point (`aigc-tf robust`), with `config.RobustnessConfig`.

Pixels are in [0, 1] throughout, the evaluation classifier's range; the GAN's discriminator gets them in [-1, 1].
Nothing here imports TensorFlow at package import, so `aigc-tf --help` stays instant.
"""
