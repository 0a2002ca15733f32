"""The benches must keep running (`--quick` smoke runs); their figures are printed, never asserted on time."""

import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"


@pytest.mark.slow
@pytest.mark.parametrize("script, expected", [
    ("gan_step.py", ["fp32 GEMM", "xla_pipeline", "input pipeline"]),
    ("text_generate.py", ["new tokens/s", "fit_xla"]),
])
def test_bench_quick_run_prints_its_figures(script, expected):
    done = subprocess.run([sys.executable, str(BENCH / script), "--quick"], capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    for text in expected:
        assert text in done.stdout
