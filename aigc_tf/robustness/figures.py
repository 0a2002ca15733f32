"""The lesson's two figures: accuracy-vs-epsilon curves, and a grid of clean digit / perturbation / adversarial digit.

Drawn on a bare matplotlib `Figure`, as `aigc_tf.plots` draws its curves: no display needed, and the caller's
backend (a notebook's inline figures) is left alone.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

LINESTYLES = {"fgsm": "--", "pgd": "-"}


def save_accuracy_curves(curves: dict[str, dict], epsilons, path: Path, title: str,
                         train_epsilon: float | None = None) -> Path:
    """One colour per classifier, dashed FGSM and solid PGD, accuracy (%) against epsilon.

    `curves` maps a classifier's display name to `{"fgsm": [...], "pgd": [...]}` (one accuracy per epsilon).
    """
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 4.5))
    ax = fig.subplots()
    for i, (name, by_attack) in enumerate(curves.items()):
        for attack, accuracies in by_attack.items():
            ax.plot(epsilons, 100 * np.asarray(accuracies), LINESTYLES.get(attack, ":"), color=f"C{i}", marker="o",
                    markersize=4, label=f"{name}, {attack.upper()}")
    if train_epsilon:
        ax.axvline(train_epsilon, color="grey", linestyle=":", linewidth=1)
        ax.annotate(f"robust training \u03b5 = {train_epsilon:g}", (train_epsilon, 40), rotation=90, ha="right",
                    va="center", fontsize=8, color="grey")
    ax.set_xlabel("\u03b5 (L\u221e budget, pixel range [0, 1])")
    ax.set_ylabel("test accuracy (%)")
    ax.set_ylim(-2, 102)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1))  # outside: no curve hidden
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return Path(path)


@dataclasses.dataclass
class Panel:
    """Adversarial versions of the figure's digits against one classifier at one epsilon."""

    classifier: str
    epsilon: float
    images: np.ndarray  # (K, 28, 28, 1) in [0, 1]
    predictions: np.ndarray  # (K,) the attacked classifier's classes
    confidences: np.ndarray  # (K,) its softmax probability of that class


def save_example_grid(clean: np.ndarray, labels: np.ndarray, panels: list[Panel], path: Path, title: str) -> Path:
    """Rows are digits; a clean column, then a perturbation and an adversarial column per panel.

    The perturbation delta = x' - x is drawn amplified to the full colour range (red +epsilon, blue -epsilon,
    white unchanged): at its true size it would be invisible, which is the point of the lesson. Under each
    adversarial digit: the attacked classifier's answer and its confidence, red when wrong.
    """
    from matplotlib.figure import Figure

    rows, columns = len(clean), 1 + 2 * len(panels)
    fig = Figure(figsize=(1.25 * columns, 1.45 * rows + 0.9))
    axes = np.asarray(fig.subplots(rows, columns, squeeze=False))
    for r in range(rows):
        _show(axes[r, 0], clean[r], f"label {labels[r]}", "black", title="clean" if r == 0 else None)
        for p, panel in enumerate(panels):
            delta = panel.images[r, ..., 0] - clean[r, ..., 0]
            ax = axes[r, 1 + 2 * p]
            ax.imshow(delta, cmap="bwr", vmin=-panel.epsilon, vmax=panel.epsilon, interpolation="nearest")
            ax.set_xticks([]), ax.set_yticks([])
            if r == 0:
                ax.set_title(f"{panel.classifier}\n\u03b4, \u03b5={panel.epsilon:g}", fontsize=8)
            wrong = panel.predictions[r] != labels[r]
            _show(axes[r, 2 + 2 * p], panel.images[r], f"\u2192 {panel.predictions[r]} ({panel.confidences[r]:.0%})",
                  "red" if wrong else "green", title=f"{panel.classifier}\nx', \u03b5={panel.epsilon:g}"
                  if r == 0 else None)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return Path(path)


def _show(ax, image: np.ndarray, caption: str, color: str, title: str | None = None) -> None:
    ax.imshow(image[..., 0], cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
    ax.set_xticks([]), ax.set_yticks([])
    ax.set_xlabel(caption, fontsize=8, color=color)
    if title:
        ax.set_title(title, fontsize=8)
