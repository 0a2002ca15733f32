"""The tutorials run top to bottom, headless, with small parameters; and they are committed without outputs.

Each notebook has one code cell tagged `parameters` (steps, epochs, sizes). The test injects a cell right after it
with the small values below (papermill's convention), executes the notebook with nbclient in a fresh kernel whose
working directory is a temporary folder, and fails on the first cell that raises. The learner's defaults stay
visible in the notebook; CI's overrides live here, where a reviewer sees what CI actually ran.
"""

import ast
import os
import re
import resource
import signal
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOK_DIR = ROOT / "notebooks"
sys.path.insert(0, str(NOTEBOOK_DIR))
import strip_outputs  # noqa: E402

NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))

# CI's small mode: every notebook must appear here, and every name must be a parameter of its notebook. The text
# lessons run on the shipped base preset (it loads in seconds), with a few steps on short windows and no XLA.
SMALL = {
    "01_gan_mnist.ipynb": dict(EPOCHS=1, SNAPSHOT_EVERY=1, EXPERIMENT_EPOCHS=1),
    "01b_gan_advanced.ipynb": dict(STEPS=20, CLUSTER_ROWS=2, TRUNCATIONS=(2.0,)),
    "02_vae_and_conditional_gan.ipynb": dict(VAE_EPOCHS=2, MANIFOLD_EPOCHS=2, GAN_EPOCHS=2),
    "03_gpt2_text.ipynb": dict(FINETUNE_STEPS=2, STEPS_PER_EPOCH=2, SCRATCH_STEPS=2, SEQUENCE_LENGTH=32, BATCH_SIZE=4,
                               VALIDATION_BATCHES=1, EVAL_SEQUENCES=4, BLEU_SEQUENCES=2, MAX_LENGTH=24,
                               KV_NEW_TOKENS=16, XLA=False),
    "04_export_and_serve.ipynb": dict(GAN_STEPS=20, VAE_STEPS=4, TEXT_STEPS=0),
    "05_robustness_and_peft.ipynb": dict(
        EPSILONS=(0.0, 0.1, 0.3), PGD_STEPS=3, NUM_TEST=200, GAN_EPOCHS=1,
        ROBUST=dict(filters=(8,), dense_units=32, epochs=2, num_train=2000),
        FINETUNE_STEPS=1, SEQUENCE_LENGTH=32, BATCH_SIZE=4, VALIDATION_BATCHES=1, EVAL_SEQUENCES=4, MAX_LENGTH=24,
        USE_DEMO_RUNS=False, XLA=False),
}
# Figures each notebook must show (image/png outputs), so a notebook that silently stops drawing fails. A slider's
# figure counts once: the notebook calls its drawing function directly, and the widget draws only when a control
# moves, which never happens headless.
MIN_FIGURES = {"01_gan_mnist.ipynb": 7, "01b_gan_advanced.ipynb": 7, "02_vae_and_conditional_gan.ipynb": 7,
               "03_gpt2_text.ipynb": 5,
               "04_export_and_serve.ipynb": 1, "05_robustness_and_peft.ipynb": 8}


def parameters_cell(notebook) -> int:
    tagged = [i for i, cell in enumerate(notebook.cells) if "parameters" in cell.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1, f"expected exactly one cell tagged 'parameters', found {len(tagged)}"
    return tagged[0]


def assigned_names(source: str) -> set[str]:
    return {target.id for node in ast.parse(source).body if isinstance(node, ast.Assign)
            for target in node.targets if isinstance(target, ast.Name)}


def with_small_parameters(notebook, overrides: dict):
    """The notebook with a cell of `overrides` injected after its parameters cell."""
    index = parameters_cell(notebook)
    unknown = set(overrides) - assigned_names(notebook.cells[index].source)
    assert not unknown, f"CI overrides {sorted(unknown)}, which the parameters cell does not define"
    source = "# Injected by tests/notebooks/test_notebooks.py: CI's small mode\n" + "\n".join(
        f"{name} = {value!r}" for name, value in overrides.items())
    cell = nbformat.v4.new_code_cell(source)
    cell.metadata["tags"] = ["injected-parameters"]
    notebook.cells.insert(index + 1, cell)
    return notebook


def test_every_notebook_has_small_parameters_and_one_parameters_cell():
    assert [p.name for p in NOTEBOOKS][:4] == list(SMALL)[:4], "notebooks 01-03 are the tutorials' reading order"
    for path in NOTEBOOKS:
        assert path.name in SMALL, f"{path.name}: add its small parameters to SMALL"
        notebook = nbformat.read(path, as_version=4)
        nbformat.validate(notebook)
        index = parameters_cell(notebook)
        assert set(SMALL[path.name]) <= assigned_names(notebook.cells[index].source), path.name


def test_committed_notebooks_carry_no_outputs_and_no_execution_counts():
    dirty = {p.name: strip_outputs.dirty_cells(nbformat.read(p, as_version=4)) for p in NOTEBOOKS}
    dirty = {name: cells for name, cells in dirty.items() if cells}
    assert not dirty, f"cells with outputs or execution counts: {dirty}; run `make strip-notebooks`"
    assert all(strip_outputs.is_clean(nbformat.read(p, as_version=4)) for p in NOTEBOOKS)


def folded_solutions(notebook) -> list[tuple[int, str]]:
    """(cell index, code) of every ```python block inside an exercise's `<details><summary>Solution</summary>`."""
    return [(index, block) for index, cell in enumerate(notebook.cells)
            if cell.cell_type == "markdown" and "<summary>Solution</summary>" in cell.source
            for block in re.findall(r"```python\n(.*?)```", cell.source, flags=re.DOTALL)]


def test_every_notebook_has_exercises_whose_folded_solutions_parse():
    """The solutions are markdown, so CI never runs them: check at least that each is there, folded, and Python."""
    for path in NOTEBOOKS:
        notebook = nbformat.read(path, as_version=4)
        solutions = folded_solutions(notebook)
        assert len(solutions) >= 2, f"{path.name}: expected at least 2 exercises with a folded solution"
        for index, block in solutions:
            assert "</details>" in notebook.cells[index].source, f"{path.name} cell {index}: unclosed <details>"
            try:
                ast.parse(block)
            except SyntaxError as err:
                pytest.fail(f"{path.name} cell {index}: the solution does not parse: {err}")


def test_strip_removes_outputs_counts_and_editor_metadata_but_keeps_tags(tmp_path):
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x = 1"), nbformat.v4.new_markdown_cell("#")])
    code = notebook.cells[0]
    code.execution_count, code.outputs = 3, [nbformat.v4.new_output("stream", name="stdout", text="1\n")]
    code.metadata.update(tags=["parameters"], scrolled=True)
    notebook.metadata["widgets"] = {"state": {}}
    path = tmp_path / "n.ipynb"
    nbformat.write(notebook, path)
    assert strip_outputs.main(["--check", str(path)]) == 1
    assert strip_outputs.main([str(path)]) == 0
    stripped = nbformat.read(path, as_version=4)
    assert strip_outputs.is_clean(stripped) and strip_outputs.main(["--check", str(path)]) == 0
    assert stripped.cells[0].outputs == [] and stripped.cells[0].execution_count is None
    assert stripped.cells[0].metadata == {"tags": ["parameters"]} and stripped.cells[0].source == "x = 1"


def dead_kernel_report(name: str, process, cell_index, stderr_log: Path) -> str:
    """Why a notebook's kernel process ended: its exit status, the cell it was running, its last stderr lines."""
    try:
        code = process.wait(timeout=10) if process is not None else None
    except Exception:  # noqa: BLE001 - a report, not a test
        code = None
    if code is not None and code < 0:
        status = f"killed by {signal.Signals(-code).name}"
        if -code == signal.SIGKILL:
            status += " (from outside: most likely the OOM killer, see `dmesg`)"
    else:
        status = f"exit status {code}"
    with open("/proc/meminfo") as f:
        available = next((line.split()[1] for line in f if line.startswith("MemAvailable")), "?")
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss // 1024
    tail = stderr_log.read_text(errors="replace").splitlines()[-40:] if stderr_log.exists() else []
    return (f"{name}: the kernel died in cell {cell_index}, {status}; MemAvailable now {int(available) // 1024} MiB, "
            f"largest finished child of pytest so far {peak} MiB RSS.\nKernel stderr ({stderr_log}), last lines:\n"
            + "\n".join(tail))


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_top_to_bottom_in_small_mode(path, tmp_path, tmp_path_factory, monkeypatch):
    from nbclient import NotebookClient
    from nbclient.exceptions import DeadKernelError

    notebook = with_small_parameters(nbformat.read(path, as_version=4), SMALL[path.name] | {"WORKDIR": str(tmp_path)})
    # The kernel is a fresh process: it must import this checkout's aigc_tf, and run in the temporary folder.
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "2")
    monkeypatch.setenv("PYTHONFAULTHANDLER", "1")  # a segfault/abort in the kernel prints every thread's Python stack
    kernel = {"process": None, "cell": None}
    client = NotebookClient(notebook, timeout=600, kernel_name="python3", allow_errors=False,
                            resources={"metadata": {"path": str(tmp_path)}},
                            on_notebook_start=lambda notebook: kernel.update(process=client.km.provisioner.process),
                            on_cell_start=lambda cell, cell_index: kernel.update(cell=cell_index))
    stderr_log = tmp_path_factory.mktemp("kernel") / f"{path.stem}.stderr.log"
    with open(stderr_log, "w") as stderr:
        try:
            client.execute(stderr=stderr)  # raises CellExecutionError, with the failing cell's traceback, on the first error
        except DeadKernelError:
            pytest.fail(dead_kernel_report(path.name, kernel["process"], kernel["cell"], stderr_log), pytrace=False)

    outputs = [output for cell in notebook.cells if cell.cell_type == "code" for output in cell.outputs]
    figures = sum("image/png" in output.get("data", {}) for output in outputs)
    assert figures >= MIN_FIGURES[path.name], f"{path.name} showed {figures} figures"
    assert list(tmp_path.iterdir()), "the notebook wrote nothing under WORKDIR"


def test_render_writes_markdown_with_outputs_and_figure_files(tmp_path):
    """notebooks/render.py's page: cells in order, streams as a terminal shows them, figures as PNG files."""
    import base64

    import render

    png = base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5E"
                           "rkJggg==")
    code = nbformat.v4.new_code_cell("train()")
    code.outputs = [
        nbformat.v4.new_output("stream", name="stdout",
                               text="epoch 1/2 [=>  ]\x08\x08\x08\x08\x08\rdone\x1b[0m\nFID 12.5\n"),
        nbformat.v4.new_output("display_data", data={"image/png": base64.b64encode(png).decode()}),
        nbformat.v4.new_output("display_data", data={"text/markdown": "| a |\n|---|\n| 1 |", "text/plain": "<md>"}),
        nbformat.v4.new_output("display_data", data={render.WIDGET: {}, "text/plain": "interactive(...)"}),
    ]
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("# Title"), code])
    page = render.to_markdown(notebook, "demo", tmp_path / "demo_files")
    assert page.index("# Title") < page.index("```python\ntrain()\n```") < page.index("```\ndone\nFID 12.5\n```")
    assert "![figure 1](demo_files/figure_01.png)" in page and "| a |\n|---|\n| 1 |" in page
    assert "interactive(" not in page and "sliders here in a running notebook" in page
    assert (tmp_path / "demo_files" / "figure_01.png").read_bytes() == png
