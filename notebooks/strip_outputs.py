"""Strip outputs, execution counts and editor metadata from notebooks: the repository keeps the lesson, not one run.

Committed outputs go stale with every change to the library, bloat every diff with base64 figures, and hide whether
a notebook still runs; CI executes each notebook instead (tests/notebooks/test_notebooks.py) and checks they are stripped.

    python notebooks/strip_outputs.py notebooks/*.ipynb           # strip in place (`make strip-notebooks`)
    python notebooks/strip_outputs.py --check notebooks/*.ipynb   # exit 1 naming the notebooks that need it
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import nbformat

KEPT_CELL_METADATA = ("tags",)  # `parameters` marks the cell CI overrides
KEPT_NOTEBOOK_METADATA = ("kernelspec", "language_info")


def dirty_cells(notebook) -> list[int]:
    """Indices of the cells that hold outputs, an execution count or editor metadata (collapsed, scrolled, ...)."""
    dirty = []
    for index, cell in enumerate(notebook.cells):
        extra_metadata = set(cell.get("metadata", {})) - set(KEPT_CELL_METADATA)
        if cell.get("outputs") or cell.get("execution_count") is not None or extra_metadata:
            dirty.append(index)
    return dirty


def is_clean(notebook) -> bool:
    return not dirty_cells(notebook) and set(notebook.metadata) <= set(KEPT_NOTEBOOK_METADATA)


def strip(notebook) -> None:
    """Remove, in place, everything `is_clean` objects to."""
    for cell in notebook.cells:
        cell.metadata = {k: v for k, v in cell.get("metadata", {}).items() if k in KEPT_CELL_METADATA}
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    notebook.metadata = {k: v for k, v in notebook.metadata.items() if k in KEPT_NOTEBOOK_METADATA}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Strip outputs and execution counts from Jupyter notebooks.")
    parser.add_argument("notebooks", nargs="+", type=Path)
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if a notebook needs stripping")
    args = parser.parse_args(argv)
    needed = []
    for path in args.notebooks:
        notebook = nbformat.read(path, as_version=4)
        if is_clean(notebook):
            continue
        needed.append(path)
        if not args.check:
            strip(notebook)
            nbformat.write(notebook, path)
            print(f"stripped {path}")
    if args.check and needed:
        print("outputs committed in: " + ", ".join(map(str, needed)) + "; run `make strip-notebooks`",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
