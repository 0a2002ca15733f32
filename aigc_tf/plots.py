"""Figures a learner would rather look at than read: sample grids, their GIF over training, loss curves.

Grids are written with Pillow directly (fast enough to render every epoch); curves with matplotlib's Agg backend,
so nothing here needs a display.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Sequence

import numpy as np


def image_grid(images: np.ndarray, columns: int | None = None, pad: int = 2, scale: int = 2) -> np.ndarray:
    """Tile images (N, H, W[, 1]) in [0, 1] into one uint8 picture, white gaps between tiles."""
    images = np.asarray(images, np.float32)
    if images.ndim == 4:
        images = images[..., 0]
    n, h, w = images.shape
    columns = columns or int(np.ceil(np.sqrt(n)))
    rows = int(np.ceil(n / columns))
    grid = np.ones((rows * (h + pad) + pad, columns * (w + pad) + pad), np.float32)
    for i, img in enumerate(images):
        r, c = divmod(i, columns)
        grid[pad + r * (h + pad): pad + r * (h + pad) + h, pad + c * (w + pad): pad + c * (w + pad) + w] = img
    grid = np.rint(np.clip(grid, 0.0, 1.0) * 255).astype(np.uint8)
    return grid.repeat(scale, axis=0).repeat(scale, axis=1)


def save_grid(images: np.ndarray, path: Path, columns: int | None = None) -> Path:
    from PIL import Image

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image_grid(images, columns)).save(path)
    return path


def save_gif(frames: Sequence[Path], path: Path, seconds_per_frame: float = 0.25) -> Path | None:
    """Animate the per-epoch grids; the last frame is held longer so the final result is readable."""
    from PIL import Image

    if not frames:
        return None
    pictures = [Image.open(f).convert("L") for f in frames]
    durations = [int(seconds_per_frame * 1000)] * (len(pictures) - 1) + [2000]
    pictures[0].save(path, save_all=True, append_images=pictures[1:], duration=durations, loop=0)
    return Path(path)


def save_loss_curve(history_csv: Path, path: Path, columns: Sequence[str], title: str, x: str = "step") -> Path:
    """Plot the given columns of a history CSV against its `x` column (`step`, or `epoch` for Keras' CSVLogger)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    with open(history_csv, newline="") as f:
        rows = list(csv.DictReader(f))
    steps = [int(r[x]) + (1 if x == "epoch" else 0) for r in rows]  # CSVLogger counts epochs from 0
    fig, ax = plt.subplots(figsize=(7, 4))
    for column in columns:
        ax.plot(steps, [float(r[column]) for r in rows], marker="o" if len(rows) < 30 else None, label=column)
    ax.set_xlabel("training step" if x == "step" else x)
    ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    ax.set_ylabel("loss (epoch mean)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)
