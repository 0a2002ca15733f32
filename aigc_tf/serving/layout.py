"""TF Serving's model layout, in one place: `<base>/<name>/<version>/saved_model.pb + variables/`.

TF Serving watches `<base>/<name>/` and serves the highest integer version. Every export of every family goes
through `publish`, which
- writes the SavedModel under a hidden name first (`.partial-<pid>-<n>`) and renames it into place when complete,
  so the server never sees a half-written version;
- takes the next free integer under the model folder's lock (`aigc_tf.locks`), so two exports of one model at once
  get two versions instead of one folder written twice;
- writes the export's provenance (`assets.extra/aigc_tf.json`) and a warm-up file the server replays at load time;
- refreshes `<base>/models.config`, so one `docker run` serves every model under `<base>`.
Reading the layout (which versions a folder holds) is `aigc_tf.serving.folders`, re-exported here.

The graphs are written with `keras.export.ExportArchive`. A plain `tf.Module` + `tf.saved_model.save` of a Keras 3
model gives a SavedModel that `tf.saved_model.load` runs but the Session-based loader of TF Serving and
`saved_model_cli run` cannot (its variables are not captured in the graph); ExportArchive's is served by both.
Families do not `archive.track()` their models: the endpoints capture the variables they use, and tracking the model
as well stores every weight twice.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import warnings
from pathlib import Path

from aigc_tf import AigcError, __version__
from aigc_tf.locks import waiting
from aigc_tf.serving.folders import METADATA_FILE, model_folders, version_dirs, versions  # noqa: F401 (re-exported)
from aigc_tf.serving.model_config import write_models_config
from aigc_tf.serving.warmup import write_warmup

_partial_names = itertools.count()


def publish(archive, model_dir: Path, metadata: dict) -> Path:
    """Write a `keras.export.ExportArchive` as the next version of `model_dir`, atomically; returns the version
    folder. `metadata` (JSON) is stored beside it as the export's provenance."""
    model_dir = Path(model_dir)
    partial = model_dir / f".partial-{os.getpid()}-{next(_partial_names)}"
    try:
        model_dir.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(partial, ignore_errors=True)
        archive.write_out(str(partial), verbose=False)
        (partial / METADATA_FILE).parent.mkdir(exist_ok=True)
        (partial / METADATA_FILE).write_text(json.dumps({"aigc_tf_version": __version__, **metadata}, indent=2))
        write_warmup(partial, model_dir.name)  # the server replays it at load time: no cold first request
        with waiting(model_dir, f"export of {model_dir.name}"):  # one version number per export
            final = model_dir / str(max(versions(model_dir, complete=False), default=0) + 1)
            partial.rename(final)
    except OSError as err:
        shutil.rmtree(partial, ignore_errors=True)
        raise AigcError(f"cannot write the export to {model_dir}: {err.strerror or err}") from None
    refresh_models_config(model_dir.parent)
    return final


def refresh_models_config(base_dir: Path) -> Path | None:
    """Rewrite `<base>/models.config` after an export (hand-edited entries kept); the export itself is complete
    either way, so a config that cannot be written is a warning, not an error."""
    try:
        return write_models_config(base_dir)
    except AigcError as err:
        warnings.warn(f"{Path(base_dir) / 'models.config'} not updated: {err}", stacklevel=3)
        return None
