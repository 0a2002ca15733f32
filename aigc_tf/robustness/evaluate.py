"""Accuracy vs epsilon: how a classifier's test accuracy falls as the attack's budget grows.

One curve per attack. At epsilon 0 both attacks return the clean digits, so every curve starts at the clean accuracy.
FGSM's curve is an optimistic bound and PGD's a tighter one; where FGSM reports a model robust and PGD does not,
the model is masking its gradients rather than being robust (Athalye et al. 2018, "Obfuscated Gradients Give a
False Sense of Security"). Even PGD only bounds robustness from above: a stronger attack (more steps, restarts,
AutoAttack) can only lower the curve further.
"""

from __future__ import annotations

import keras
import numpy as np

from aigc_tf.robustness.attacks import ATTACKS, attack_batches, compiled_attack
from aigc_tf.training import progress_verbosity


def predict_classes(model: keras.Model, images: np.ndarray, batch_size: int = 500) -> np.ndarray:
    """The argmax class (N,) of each image, the model in inference mode."""
    logits = model.predict(np.asarray(images, np.float32), batch_size=batch_size, verbose=0)
    return np.asarray(logits).argmax(axis=1)


def accuracy(model: keras.Model, images: np.ndarray, labels: np.ndarray, batch_size: int = 500) -> float:
    return float(np.mean(predict_classes(model, images, batch_size) == labels))


def accuracy_vs_epsilon(model: keras.Model, images: np.ndarray, labels: np.ndarray, epsilons, *, pgd_steps: int = 10,
                        seed: int = 0, batch_size: int = 500, from_logits: bool = True, verbose: bool = True,
                        name: str = "") -> tuple[dict[str, list[float]], dict[tuple[str, float], np.ndarray]]:
    """Accuracy of `model` on each attack's adversarial `images` at each epsilon.

    Returns `({"fgsm": [acc per epsilon], "pgd": [...]}, {(attack, epsilon): adversarial images})`; the images
    are kept for the figures and for asking the GAN's discriminator about them.
    """
    curves, adversarial = {}, {}
    for attack in ATTACKS:
        if verbose:
            print(f"{name or 'classifier'}: {attack.upper()}" + (f"-{pgd_steps}" if attack == "pgd" else "")
                  + f" on {len(images)} test digits at {len(epsilons)} epsilons")
        bar = keras.utils.Progbar(len(epsilons), verbose=progress_verbosity(verbose), unit_name="epsilon",
                                  stateful_metrics=["epsilon", "accuracy"])
        attack_fn = compiled_attack(model, attack, steps=pgd_steps, from_logits=from_logits)
        curves[attack] = []
        for i, epsilon in enumerate(epsilons):
            adversarial[attack, epsilon] = attack_batches(attack_fn, images, labels, epsilon, seed=seed,
                                                          batch_size=batch_size)
            curves[attack].append(accuracy(model, adversarial[attack, epsilon], labels, batch_size))
            bar.update(i + 1, [("epsilon", epsilon), ("accuracy", curves[attack][-1])])
    return curves, adversarial
