import csv

import matplotlib
import numpy as np
import pytest

from aigc_tf import plots


def test_image_grid_tiles_images_row_by_row_with_white_gaps():
    images = np.stack([np.full((2, 3), v, np.float32) for v in (0.0, 0.5, 1.0)])
    grid = plots.image_grid(images, columns=2, pad=1, scale=1)
    assert grid.shape == (2 * 3 + 1, 2 * 4 + 1)
    assert grid[1, 1] == 0 and grid[1, 5] == 128 and grid[4, 1] == 255
    assert grid[0].tolist() == [255] * grid.shape[1]  # the gap above the first row
    assert (grid[4:6, 5:8] == 255).all()  # the empty fourth tile stays white


@pytest.fixture
def svg_backend():
    """A non-Agg backend in force, as a notebook's inline backend would be; restored afterwards."""
    before = matplotlib.get_backend()
    matplotlib.use("svg")
    yield
    matplotlib.use(before)


def test_saving_a_loss_curve_leaves_the_callers_matplotlib_backend_alone(tmp_path, svg_backend):
    history = tmp_path / "history.csv"
    with open(history, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerows([["step", "d_loss", "g_loss"], [1, 1.3, 0.7], [2, 1.2, 0.9]])
    path = plots.save_loss_curve(history, tmp_path / "curve.png", ["d_loss", "g_loss"], "losses")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert matplotlib.get_backend() == "svg"  # training inside a notebook must not switch off inline figures


def test_show_grid_draws_the_tiled_grid_on_the_given_axes():
    from matplotlib.figure import Figure

    images = np.random.default_rng(0).random((5, 28, 28, 1)).astype(np.float32)
    ax = Figure().subplots()
    assert plots.show_grid(images, columns=5, title="five", ax=ax) is ax
    np.testing.assert_array_equal(ax.images[0].get_array(), plots.image_grid(images, 5, scale=1))
    assert ax.get_title() == "five" and not ax.axison


def test_a_grid_write_interrupted_before_the_rename_leaves_no_file_under_the_final_name(tmp_path, monkeypatch):
    from pathlib import Path

    def killed(self, target):  # the process dies between writing the temporary file and renaming it
        raise KeyboardInterrupt

    monkeypatch.setattr(Path, "replace", killed)
    with pytest.raises(KeyboardInterrupt):
        plots.save_grid(np.zeros((4, 28, 28)), tmp_path / "epoch_0001.png")
    assert list(tmp_path.glob("epoch_*.png")) == []  # the GIF's glob never sees the half-done frame


def test_the_samples_gif_skips_a_torn_frame_instead_of_failing_the_run(tmp_path):
    from PIL import Image

    good = [plots.save_grid(np.full((4, 28, 28), v), tmp_path / f"epoch_000{i}.png") for i, v in enumerate((0.2, 0.8))]
    torn = tmp_path / "epoch_0009.png"
    torn.write_bytes(good[0].read_bytes()[:40])  # what a SIGKILL mid-write left behind, before writes were atomic
    with pytest.warns(UserWarning, match="epoch_0009.png"):
        gif = plots.save_gif(good + [torn], tmp_path / "samples.gif")
    assert Image.open(gif).n_frames == 2
