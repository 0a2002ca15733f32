"""The implement-it exercises: each checker passes the solution in notebooks/solutions/ and fails the notebook's stub.

A notebook's exercise is a code cell tagged `exercise` (the learner-facing stub, raising NotImplementedError) followed
by a cell `check("<name>", <the stub's names>)`. The stubs are cut from the notebooks here, not copied, so a stub
that stops matching its checker fails this test. Near-miss implementations (the usual mistakes) must fail too: a
checker that any answer passes teaches nothing.
"""

import ast
import importlib.util
from pathlib import Path

import keras
import nbformat
import numpy as np
import pytest
import tensorflow as tf

from aigc_tf import AigcError
from aigc_tf.notebook import CHECKS, check

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
SOLUTIONS = ROOT / "notebooks" / "solutions"

# The solution file of each exercise.
SOLUTION_FILES = {
    "gan_losses": "01_gan_losses.py",
    "truncate": "01b_truncate.py",
    "reparameterize": "02_reparameterize.py",
    "top_k": "03_top_k_top_p.py",
    "top_p": "03_top_k_top_p.py",
    "rest_request": "04_rest_request.py",
    "lora_dense": "05_lora_dense.py",
}


def exercises_of(path: Path) -> list[tuple[str, str, tuple[str, ...]]]:
    """(checker name, stub source, the stub names the checker takes) for each check call after an exercise cell."""
    cells = nbformat.read(path, as_version=4).cells
    found = []
    for index, cell in enumerate(cells):
        if "exercise" not in cell.get("metadata", {}).get("tags", []):
            continue
        assert index + 1 < len(cells) and cells[index + 1].cell_type == "code", \
            f"{path.name}: no check cell after exercise cell {index}"
        for node in ast.walk(ast.parse(cells[index + 1].source)):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "check":
                name, *names = node.args
                found.append((name.value, cell.source, tuple(arg.id for arg in names)))
    return found


EXERCISES = [(path.name, *exercise) for path in NOTEBOOKS for exercise in exercises_of(path)]
IDS = [f"{notebook}-{name}" for notebook, name, _, _ in EXERCISES]


def solution(name: str):
    path = SOLUTIONS / SOLUTION_FILES[name]
    spec = importlib.util.spec_from_file_location(f"solution_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def stub(source: str) -> dict:
    """The stub cell run as the notebook runs it, with the imports every notebook has made by then."""
    namespace = {"np": np, "tf": tf, "keras": keras}
    exec(compile(source, "<exercise cell>", "exec"), namespace)  # noqa: S102 - our own notebooks' cells
    return namespace


def test_every_notebook_has_an_implement_it_exercise_with_a_solution_file():
    for path in NOTEBOOKS:
        names = [name for name, _, _ in exercises_of(path)]
        assert names, f"{path.name}: no cell tagged `exercise` followed by a check(...) cell"
        for name in names:
            assert name in CHECKS, f"{path.name}: check({name!r}) names no checker"
            assert (SOLUTIONS / SOLUTION_FILES[name]).exists(), f"{name}: no solution file"
            assert "NotImplementedError" in dict((n, s) for n, s, _ in exercises_of(path))[name], \
                f"{path.name}: the stub of {name} must raise NotImplementedError"


@pytest.mark.parametrize("notebook,name,source,names", EXERCISES, ids=IDS)
def test_the_solution_passes_its_checker(notebook, name, source, names):
    module = solution(name)
    CHECKS[name](*(getattr(module, n) for n in names))


@pytest.mark.parametrize("notebook,name,source,names", EXERCISES, ids=IDS)
def test_the_notebooks_stub_fails_its_checker(notebook, name, source, names):
    namespace = stub(source)
    with pytest.raises((NotImplementedError, AssertionError)):
        CHECKS[name](*(namespace[n] for n in names))


# Near misses: the mistakes a learner makes, each of which its checker must catch.

def _softplus(x):
    return tf.reduce_mean(tf.nn.softplus(x), axis=-1)


NEAR_MISSES = {
    "gan_losses, the saturating minimax G loss log(1 - D)": (
        "gan_losses", lambda fake: -_softplus(fake), solution("gan_losses").discriminator_loss),
    "gan_losses, smoothing the fake targets too": (
        "gan_losses", solution("gan_losses").generator_loss,
        lambda real, fake, s=0.0: ((1 - s) * _softplus(-real) + s * _softplus(real)
                                   + (1 - s) * _softplus(fake) + s * _softplus(-fake))),
    "truncate, clipping instead of mapping": ("truncate", lambda z, t: np.clip(z, -t, t)),
    "reparameterize, the variance for the standard deviation": (
        "reparameterize", lambda mean, log_variance, epsilon: mean + tf.exp(log_variance) * epsilon),
    "reparameterize, noise around a constant (no gradient)": (
        "reparameterize",
        lambda mean, log_variance, epsilon: tf.stop_gradient(mean + tf.exp(0.5 * log_variance) * epsilon)),
    "top_k, one too many": ("top_k", lambda logits, k: solution("top_k").top_k_filter(logits, k + 1)),
    "top_p, tokens while the mass stays below p (one too few)": (
        "top_p", lambda logits, p: _top_p_mass_below(logits, p)),
    "rest_request, the columnar format": (
        "rest_request", lambda inputs, signature: __import__("json").dumps(
            {"signature_name": signature, "inputs": {k: np.asarray(v).tolist() for k, v in inputs.items()}})),
}


def _top_p_mass_below(logits, p):
    probabilities = np.exp(logits) / np.exp(logits).sum(axis=-1, keepdims=True)
    order = np.argsort(-probabilities, axis=-1)
    mass = np.cumsum(np.take_along_axis(probabilities, order, axis=-1), axis=-1)
    keep = np.zeros(logits.shape, bool)
    np.put_along_axis(keep, order, mass <= p, axis=-1)
    return np.where(keep, logits, -np.inf)


class _LoRAWithRandomB(solution("lora_dense").LoRADense):
    def build(self, input_shape):
        super().build(input_shape)
        self.b.assign(np.full(self.b.shape, 0.1, np.float32))  # not zero: the layer no longer starts as the base


class _LoRAWithTrainableBase(solution("lora_dense").LoRADense):
    def __init__(self, base, rank, alpha, **kwargs):
        super().__init__(base, rank, alpha, **kwargs)
        base.trainable = True


NEAR_MISSES["lora_dense, B not starting at zero"] = ("lora_dense", _LoRAWithRandomB)
NEAR_MISSES["lora_dense, the base left trainable"] = ("lora_dense", _LoRAWithTrainableBase)


@pytest.mark.parametrize("mistake", list(NEAR_MISSES))
def test_each_checker_catches_a_near_miss(mistake):
    name, *implementation = NEAR_MISSES[mistake]
    with pytest.raises(AssertionError):
        CHECKS[name](*implementation)


def test_check_reports_instead_of_raising(capsys):
    def stub_filter(logits, p):
        raise NotImplementedError

    check("top_p", stub_filter)
    assert "not implemented yet" in capsys.readouterr().out
    check("top_k", lambda logits, k: logits)  # keeps every token
    assert "top_k: not yet. top_k_filter(k=1) row 0 kept tokens [0, 1, 2, 3, 4]" in capsys.readouterr().out
    check("top_p", solution("top_p").top_p_filter)
    assert capsys.readouterr().out == "top_p: all checks pass.\n"
    with pytest.raises(AigcError, match="no exercise named"):
        check("top_q", stub_filter)
