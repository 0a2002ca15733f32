"""`make bench` must keep running: a `--quick` smoke run writes every results.json key, RESULTS.md and the plots.

Speed is never asserted here (figures live in bench/RESULTS.md); only that the bench measures and reports them.
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"


@pytest.mark.slow
def test_quick_bench_writes_results_report_and_plots(tmp_path):
    out = tmp_path / "results.json"
    done = subprocess.run([sys.executable, str(BENCH / "run.py"), "--quick", "--out", str(out)],
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(out.read_text())

    assert results["machine"] and results["bandwidth_gbs"] > 0
    assert set(results["gemm_gflops"]) == {"fp32", "bf16"}
    gan = results["gan"]
    assert set(gan["steps_per_s"]) == {"eager", "function", "xla", "xla_pipeline", "bf16_function", "bf16_xla"}
    assert all(v > 0 for v in gan["steps_per_s"].values())
    assert gan["flops_per_step"] > 0 and 0 < gan["mfu_xla"] and 0 < gan["mfu_gemm_ceiling"]
    assert gan["attribution_steps_per_s"]["xla_no_dropout"] > 0
    decode = results["decode"]
    assert {"keras_hub_default", "fp32", "fp32_no_xla", "bf16", "bf16_no_xla", "served", "served_bf16",
            "served_xla"} <= set(decode["tokens_per_s"])
    for key in ("weight_bytes", "fraction_of_bandwidth"):
        assert set(decode[key]) >= set(decode["tokens_per_s"])
    assert decode["weight_bytes"]["bf16"] < decode["weight_bytes"]["fp32"]
    assert {"fp32", "bf16"} <= set(decode["perplexity_ratio"]) and decode["perplexity_ratio"]["fp32"] == 1.0
    # the project's fp32 loop and its served export decode exactly keras-hub's greedy tokens
    agreement = decode["token_agreement"]
    assert agreement["fp32"] == agreement["served"] == agreement["served_xla"] == 1.0
    assert agreement["served_bf16"] == agreement["bf16_no_xla"]  # the stock bf16 export serves its own loop's tokens
    serve = results["serve"]  # the stock-server concurrency table
    assert [(row["mode"], row["clients"]) for row in serve["table"].values()] == [
        ("concurrent", 1), ("concurrent", 4), ("batching", 1), ("batching", 4)]
    assert all(row["tokens_per_s"] > 0 and 0 < row["p50_s"] <= row["p95_s"] for row in serve["table"].values())
    assert decode["scaling"]["batch"] and decode["scaling"]["prompt"]
    train = results["train"]
    assert set(train["tokens_per_s"]) == {"bare_fit", "aigc_tf", "aigc_tf_bf16"} and train["mfu"] > 0

    report = (tmp_path / "RESULTS.md").read_text()
    assert results["machine"] in report and "## Targets" in report and "What limits" in report
    plots = sorted(p.name for p in (tmp_path / "plots").glob("*.png"))
    assert plots == ["decode_scaling.png", "decode_variants.png", "gan_step.png", "serve_concurrency.png", "train.png"]
    assert "## GPT-2 served: concurrent clients" in report
    assert all(f"plots/{name}" in report for name in plots)
