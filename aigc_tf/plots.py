"""Figures a learner would rather look at than read: sample grids, their GIF over training, loss curves.

Grids are written with Pillow directly (fast enough to render every epoch); curves with a bare matplotlib `Figure`,
which needs no display and, unlike `matplotlib.use("Agg")`, leaves the caller's backend alone: training from a
notebook must not switch off its inline figures. `show_grid` is the notebooks' way to look at samples.
"""

from __future__ import annotations

import csv
import warnings
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
    """Write the grid to a hidden temporary file, then rename it into place.

    A training run killed mid-write must not leave a torn PNG under the final name: the checkpoint for that epoch is
    already on disk, so the resumed run never redraws it, and the GIF at the end would trip over it.
    """
    from PIL import Image

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    image_format = Image.registered_extensions().get(path.suffix.lower(), "PNG")
    Image.fromarray(image_grid(images, columns)).save(tmp, format=image_format)
    tmp.replace(path)
    return path


def save_gif(frames: Sequence[Path], path: Path, seconds_per_frame: float = 0.25) -> Path | None:
    """Animate the per-epoch grids; the last frame is held longer so the final result is readable."""
    from PIL import Image

    pictures = []
    for frame in frames:
        try:
            pictures.append(Image.open(frame).convert("L"))
        except (OSError, ValueError) as error:  # a torn frame from a run killed by an older version: skip, say so
            warnings.warn(f"samples GIF: skipping unreadable frame {frame} ({error})", stacklevel=2)
    if not pictures:
        return None
    durations = [int(seconds_per_frame * 1000)] * (len(pictures) - 1) + [2000]
    pictures[0].save(path, save_all=True, append_images=pictures[1:], duration=durations, loop=0)
    return Path(path)


def save_loss_curve(history_csv: Path, path: Path, columns: Sequence[str], title: str, x: str = "step") -> Path:
    """Plot the given columns of a history CSV against its `x` column (`step`, or `epoch` for Keras' CSVLogger)."""
    import matplotlib.ticker
    from matplotlib.figure import Figure

    with open(history_csv, newline="") as f:
        rows = list(csv.DictReader(f))
    steps = [int(r[x]) + (1 if x == "epoch" else 0) for r in rows]  # CSVLogger counts epochs from 0
    fig = Figure(figsize=(7, 4))
    ax = fig.subplots()
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
    return Path(path)


def show_grid(images: np.ndarray, columns: int | None = None, title: str | None = None, ax=None, scale: int = 1):
    """Draw `image_grid(images)` on matplotlib axes (new ones unless `ax` is given), grey, no ticks; returns the axes.

    For notebooks: with the inline backend the figure appears under the cell.
    """
    import matplotlib.pyplot as plt

    grid = image_grid(images, columns, scale=scale)
    if ax is None:
        _, ax = plt.subplots(figsize=(max(2.0, grid.shape[1] / 60), max(2.0, grid.shape[0] / 60)))
    ax.imshow(grid, cmap="gray", vmin=0, vmax=255, interpolation="nearest")
    ax.set_axis_off()
    if title:
        ax.set_title(title)
    return ax
