"""SavedModel exports in the layout TF Serving loads: `<base>/<name>/<version>/saved_model.pb + variables/`.

TF Serving watches `<base>/<name>/` and serves the highest integer version, so each export goes to the next free
integer, is written under a hidden temporary name first and renamed into place when complete: the server never
sees a half-written version.

The graphs are written with `keras.export.ExportArchive`. A plain `tf.Module` + `tf.saved_model.save` of a Keras 3
model produces a SavedModel that `tf.saved_model.load` runs but the Session-based loader used by TF Serving and
`saved_model_cli run` cannot (its variables are not captured in the graph); ExportArchive's is served by both.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import keras
import tensorflow as tf

from aigc_tf import AigcError, __version__
from aigc_tf.config import to_json

METADATA_FILE = "assets.extra/aigc_tf.json"  # TF Serving ignores assets.extra/ except for warm-up requests


def versions(model_dir: Path) -> list[int]:
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        return []
    return sorted(int(p.name) for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit())


def next_version_dir(model_dir: Path) -> Path:
    existing = versions(model_dir)
    return Path(model_dir) / str((existing[-1] + 1) if existing else 1)


def write_archive(archive: keras.export.ExportArchive, model_dir: Path, metadata: dict) -> Path:
    """Write `archive` as the next version of `model_dir`, atomically; returns the version folder."""
    model_dir = Path(model_dir)
    final = next_version_dir(model_dir)
    partial = model_dir / f".partial-{final.name}"
    try:
        model_dir.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(partial, ignore_errors=True)
        archive.write_out(str(partial), verbose=False)
        (partial / METADATA_FILE).parent.mkdir(exist_ok=True)
        (partial / METADATA_FILE).write_text(json.dumps({"aigc_tf_version": __version__, **metadata}, indent=2))
        partial.rename(final)
    except OSError as err:
        shutil.rmtree(partial, ignore_errors=True)
        raise AigcError(f"cannot write the export to {model_dir}: {err.strerror or err}") from None
    return final


def export_gan(run_dir: Path, model_dir: Path = Path("saved_models/gan")) -> Path:
    """Export a GAN run's generator: `serving_default(noise: float32 [None, latent_dim]) -> images [None, 28, 28, 1]`.

    The images are in [0, 1] (the generator's tanh output rescaled) so a client can display them directly, and
    BatchNormalization runs in inference mode, so a sample does not depend on the rest of its batch.
    """
    from aigc_tf.gan.train import load_generator

    generator, config, step = load_generator(run_dir)
    archive = keras.export.ExportArchive()
    archive.track(generator)

    def serve(noise):
        images = generator(noise, training=False)  # (N, 28, 28, 1) in [-1, 1]
        return {"images": (images + 1.0) / 2.0}

    archive.add_endpoint(
        name="serving_default", fn=serve,
        input_signature=[tf.TensorSpec([None, config.latent_dim], tf.float32, name="noise")])
    return write_archive(archive, model_dir, {"family": "gan", "run": str(Path(run_dir).resolve()), "step": step,
                                              "config": json.loads(to_json(config))})
