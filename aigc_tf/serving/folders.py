"""Reading TF Serving's model layout, `<base>/<name>/<version>/saved_model.pb`: which models and versions it holds.

The lowest serving module: the writer (`aigc_tf.serving.layout.publish`), the model config and the check all read
folders through it, and it imports none of them.
"""

from __future__ import annotations

from pathlib import Path

from aigc_tf import AigcError

METADATA_FILE = "assets.extra/aigc_tf.json"  # an export's provenance (TF Serving reads only warm-up requests there)


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
