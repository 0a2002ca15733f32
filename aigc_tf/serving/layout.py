"""TF Serving's model layout, in one place: `<base>/<name>/<version>/saved_model.pb + variables/`.

TF Serving watches `<base>/<name>/` and serves the highest integer version. Every export of every family goes
through `publish`, which
- writes the SavedModel under a hidden name first (`.partial-<pid>-<n>`) and renames it into place when complete,
  so the server never sees a half-written version;
- takes the next free integer under the model folder's lock (`aigc_tf.locks`), so two exports of one model at once
  get two versions instead of one folder written twice;
- writes the export's provenance (`assets.extra/aigc_tf.json`) and a warm-up file the server replays at load time;
- refreshes `<base>/models.config`, so one `docker run` serves every model under `<base>`.

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

METADATA_FILE = "assets.extra/aigc_tf.json"  # an export's provenance (TF Serving reads only warm-up requests there)
_partial_names = itertools.count()


def versions(model_dir: Path, complete: bool = True) -> list[int]:
    """The versions of a model folder, oldest first: its integer-named folders, as TF Serving sees them, and with
    `complete` only those holding a `saved_model.pb`."""
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        return []
    return sorted(int(p.name) for p in model_dir.iterdir()
                  if p.is_dir() and p.name.isdigit() and (not complete or (p / "saved_model.pb").is_file()))


def model_folders(base_dir: Path) -> dict[str, list[int]]:
    """`{name: [versions]}` for every folder of `base_dir` that holds at least one complete version; `.partial-*`
    folders (exports being written) and folders without integer versions are not models."""
    base_dir = Path(base_dir)
    folders = sorted(p for p in base_dir.iterdir() if p.is_dir() and not p.name.startswith("."))
    return {folder.name: found for folder in folders if (found := versions(folder))}


def version_dirs(path: Path, all_versions: bool = False) -> list[Path]:
    """The version folders under `path`: a version folder itself, a model folder (`<name>/`), or a base folder of
    model folders (`saved_models/`). By default only each model's newest version, the one TF Serving's default
    policy serves."""
    path = Path(path)
    if not path.exists():
        raise AigcError(f"{path} does not exist; export a model first (e.g. `aigc-tf gan export`)")
    if (path / "saved_model.pb").exists():
        return [path]

    def of(folder: Path) -> list[Path]:  # every integer folder: a broken newest version is what the server loads
        found = [folder / str(v) for v in versions(folder, complete=False)]
        return found if all_versions else found[-1:]

    found = of(path)
    if not found:
        for folder in sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith(".")):
            found += of(folder)
    if not found:
        raise AigcError(f"no SavedModel versions under {path} (expected {path}/<name>/<version>/saved_model.pb)")
    return found


def publish(archive, model_dir: Path, metadata: dict) -> Path:
    """Write a `keras.export.ExportArchive` as the next version of `model_dir`, atomically; returns the version
    folder. `metadata` (JSON) is stored beside it as the export's provenance."""
    from aigc_tf.locks import waiting
    from aigc_tf.serving.warmup import write_warmup

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
    from aigc_tf.serving.model_config import write_models_config

    try:
        return write_models_config(base_dir)
    except AigcError as err:
        warnings.warn(f"{Path(base_dir) / 'models.config'} not updated: {err}", stacklevel=3)
        return None
