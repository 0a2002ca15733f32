"""Execute notebooks at their default (full) size and write copies a static viewer shows: Markdown with figures.

The committed .ipynb stay stripped (strip_outputs.py); a learner on GitHub reads notebooks/rendered/<name>.md, which
holds every cell's source, its printed output, its tables and its figures (PNG files beside it in <name>_files/),
as one run with the notebook's own parameters produced them.

    python notebooks/render.py                          # every notebook (`make render-notebooks`)
    python notebooks/render.py notebooks/02_*.ipynb     # some of them

Each notebook runs in a fresh kernel that nbclient starts the way Jupyter does (the `python3` kernelspec, i.e.
`python -m ipykernel_launcher`), with notebooks/ as its working directory and this checkout first on PYTHONPATH, so
`WORKDIR = "../runs/notebooks"` lands in the repository's runs/. A cell that raises stops that notebook; its
rendered copy is not written, and the others still run.
"""

from __future__ import annotations

import argparse
import base64
import os
import re
import shutil
import sys
import time
from pathlib import Path

import nbformat

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
OUT = HERE / "rendered"
WIDGET = "application/vnd.jupyter.widget-view+json"
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def terminal_text(text: str) -> str:
    """What a terminal would show: ANSI colours dropped, a carriage return or backspace overwriting (progress bars)."""
    lines = []
    for line in ANSI.sub("", text).split("\n"):
        line = line.split("\r")[-1] if "\r" in line.rstrip("\r") else line.rstrip("\r")
        while re.search("[^\x08]\x08", line):  # a backspace erases the character before it
            line = re.sub("[^\x08]\x08", "", line, count=1)
        line = line.replace("\x08", "")  # backspaces at the start of a line erase nothing
        lines.append(line)
    return "\n".join(lines)


def fenced(text: str, language: str = "") -> str:
    fence = "````" if "```" in text else "```"
    return f"{fence}{language}\n{text.rstrip()}\n{fence}\n"


def to_markdown(notebook, stem: str, figures_dir: Path) -> str:
    """One Markdown page: markdown cells as they are, code in python fences, outputs below, figures as PNG links."""
    parts, figure = [], 0
    for cell in notebook.cells:
        if cell.cell_type == "markdown":
            parts.append(cell.source.rstrip() + "\n")
            continue
        if cell.cell_type != "code" or not cell.source.strip():
            continue
        parts.append(fenced(cell.source, "python"))
        stream = ""
        for output in cell.outputs:
            if output.output_type == "stream":
                stream += output.text
                continue
            if stream:
                parts.append(fenced(terminal_text(stream)))
                stream = ""
            if output.output_type == "error":
                parts.append(fenced(terminal_text("\n".join(output.traceback))))
                continue
            data = output.get("data", {})
            if "image/png" in data:
                figure += 1
                figures_dir.mkdir(parents=True, exist_ok=True)
                name = f"figure_{figure:02d}.png"
                (figures_dir / name).write_bytes(base64.b64decode(data["image/png"]))
                parts.append(f"![figure {figure}]({figures_dir.name}/{name})\n")
            elif WIDGET in data:
                parts.append("*(sliders here in a running notebook; the figure above shows their defaults)*\n")
            elif "text/markdown" in data:
                parts.append(data["text/markdown"].rstrip() + "\n")
            elif "text/plain" in data:
                parts.append(fenced(terminal_text(data["text/plain"])))
        if stream:
            parts.append(fenced(terminal_text(stream)))
    header = (f"<!-- Rendered by notebooks/render.py from {stem}.ipynb at its default parameters; "
              "do not edit: run `make render-notebooks`. -->\n")
    return header + "\n".join(parts)


def render(path: Path, out: Path = OUT, timeout: int = 7200) -> float:
    """Execute `path` top to bottom in a fresh kernel and write out/<stem>.md with its figures; the seconds it took."""
    from nbclient import NotebookClient

    notebook = nbformat.read(path, as_version=4)
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    began = time.perf_counter()
    NotebookClient(notebook, timeout=timeout, kernel_name="python3", allow_errors=False,
                   resources={"metadata": {"path": str(path.parent)}}).execute()
    seconds = time.perf_counter() - began
    figures_dir = out / f"{path.stem}_files"
    shutil.rmtree(figures_dir, ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{path.stem}.md").write_text(to_markdown(notebook, path.stem, figures_dir))
    return seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Execute notebooks at full size and write rendered Markdown copies.")
    parser.add_argument("notebooks", nargs="*", type=Path, help="default: every notebooks/*.ipynb")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    failed = []
    for path in args.notebooks or sorted(HERE.glob("*.ipynb")):
        print(f"{path.name}: running ...", flush=True)
        try:
            seconds = render(path.resolve(), args.out)
        except Exception as err:  # noqa: BLE001 - report it and render the others
            print(f"{path.name}: FAILED, {type(err).__name__}: {str(err).strip().splitlines()[-1:]}", flush=True)
            failed.append(path.name)
            continue
        print(f"{path.name}: {seconds:.0f} s -> {args.out / (path.stem + '.md')}", flush=True)
    if failed:
        print("not rendered: " + ", ".join(failed), file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
