"""`make bench` must keep running: a `--quick` smoke run writes every results.json key, RESULTS.md and the plots.

Speed is never asserted here (figures live in bench/RESULTS.md); only that the bench measures and reports them, and
(fast tests, scripted clocks and rates) that its ceilings are peaks and its ratios share one denominator.
"""

import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"


@pytest.mark.slow
def test_quick_bench_writes_results_report_and_plots(tmp_path):
    out = tmp_path / "results.json"
    done = subprocess.run([sys.executable, str(BENCH / "run.py"), "--quick", "--out", str(out)],
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(out.read_text())

    assert results["machine"] and results["bandwidth_gbs"] > 0
    assert set(results["gemm_gflops"]) == {"fp32", "bf16"}
    # both probes' every configuration lands in results.json (run.py keeps the list the start-of-run probe returned)
    assert [set(entry["gemm"]) for entry in results["probe_log"]] == [{"fp32", "bf16"}] * 2
    assert results["gemm_gflops"]["fp32"] == max(max(e["gemm"]["fp32"].values()) for e in results["probe_log"])
    assert set(results["cpu"]["flags"]) == {"fma", "avx2", "avx512f", "avx512_bf16", "amx_tile", "amx_bf16"}
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
    # bf16 agreement is a measurement, not asserted: where bf16 is emulated (AVX2-only CPUs) the served graph's
    # kernels and the in-process loop round differently (0.49 vs 1.0 seen on a Zen 3), where it is native they agree.
    assert all(0.0 <= agreement[k] <= 1.0 for k in ("bf16", "bf16_no_xla", "served_bf16"))
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


# Fast checks of the probe and report logic (no timing is measured: clocks and rates are scripted).

sys.path.insert(0, str(BENCH))


def _synthetic(ceiling_steps_per_s=30.0, bf16_tokens_per_s=30.0) -> dict:
    """A small results dict: peaks fp32 100 / bf16 150 GFLOP/s, 10 GB/s; stored ratios deliberately stale."""
    steps = {"eager": 5.0, "function": 20.0, "xla": 24.0, "xla_pipeline": 23.0, "bf16_function": 33.0,
             "bf16_xla": 22.0}
    return {
        "gemm_gflops": {"fp32": 100.0, "bf16": 150.0}, "bandwidth_gbs": 10.0,
        "gan": {"flops_per_step": 2e9, "batch_size": 256, "steps_per_s": steps,
                "steps_per_s_repeats": {k: [v * 0.98, v, v * 1.01] for k, v in steps.items()},
                "gemm_ceiling_steps_per_s": ceiling_steps_per_s,
                "mfu_xla": 0.9, "mfu_gemm_ceiling": 0.9, "mfu": {k: 0.9 for k in steps},  # stale: never read
                "scaling": {"64": {"steps_per_s": 80.0, "mfu": 0.9}, "256": {"steps_per_s": 24.0, "mfu": 0.9}}},
        "decode": {"tokens_per_s": {"keras_hub_default": 10.0, "fp32": 15.0, "fp32_no_xla": 12.0,
                                    "bf16": bf16_tokens_per_s, "bf16_no_xla": 12.0},
                   "weight_bytes": {"keras_hub_default": 5e8, "fp32": 5e8, "fp32_no_xla": 5e8, "bf16": 2.5e8,
                                    "bf16_no_xla": 2.5e8},
                   "fraction_of_bandwidth": {"bf16": 0.5}},  # stale
        "train": {"flops_per_token": 1e8, "tokens_per_s": {"bare_fit": 200.0, "aigc_tf": 210.0,
                                                           "aigc_tf_bf16": 300.0},
                  "tokens_per_s_repeats": {"bare_fit": [200.0, 201.0, 199.0], "aigc_tf": [210.0, 209.0, 211.0],
                                           "aigc_tf_bf16": [300.0, 301.0, 299.0]}},
    }


def _verdicts(r) -> dict:
    import report

    return {name: verdict for name, _, _, verdict in report.targets(r)}


def test_every_mfu_divides_by_one_peak_per_precision():
    import report

    ratios = report.derived(_synthetic())
    gan = ratios["gan_mfu"]
    assert gan["xla"].value == pytest.approx(24.0 * 2e9 / 100e9)
    assert ratios["gan_mfu_ceiling"].value == pytest.approx(30.0 * 2e9 / 100e9)  # not the stale stored 0.9
    assert ratios["gan_scaling_mfu"]["256"].value == pytest.approx(gan["xla"].value)
    assert ratios["gan_scaling_mfu"]["64"].value == pytest.approx(80.0 * 2e9 * 64 / 256 / 100e9)
    assert gan["bf16_function"].value == pytest.approx(33.0 * 2e9 / 150e9)  # bf16 figures: the bf16 peak
    assert ratios["train_mfu"]["aigc_tf"].value == pytest.approx(210.0 * 1e8 / 100e9)
    assert ratios["train_mfu"]["aigc_tf_bf16"].value == pytest.approx(300.0 * 1e8 / 150e9)
    assert ratios["decode_fraction"]["bf16"].value == pytest.approx(30.0 * 2.5e8 / 10e9)
    assert [x for x in gan["xla"].repeats] == pytest.approx([v * 2e9 / 100e9 for v in (24.0 * 0.98, 24.0, 24.24)])
    # a bf16 peak below fp32 (emulated bf16 on AVX2) is not a ceiling for a mixed-bf16 step: the better of the two is
    slow_bf16 = _synthetic()
    slow_bf16["gemm_gflops"]["bf16"] = 50.0
    assert report.derived(slow_bf16)["gan_mfu"]["bf16_function"].value == pytest.approx(33.0 * 2e9 / 100e9)


def test_a_ratio_above_its_ceiling_is_a_failed_probe_not_a_result(tmp_path):
    import report

    assert _verdicts(_synthetic())["GAN fp32 XLA MFU >= 75% of the fp32 GEMM"] == "missed"
    assert _verdicts(_synthetic())["decode `bf16` >= 60% of the bandwidth ceiling"] == "met"
    over = _synthetic(bf16_tokens_per_s=50.0)  # 50 x 250 MB = 12.5 GB/s against a 10 GB/s "ceiling"
    over["gan"]["steps_per_s_repeats"]["xla"] = [24.0, 24.0, 80.0]  # one repeat above the GEMM "peak"
    verdicts = _verdicts(over)
    assert verdicts["decode `bf16` >= 60% of the bandwidth ceiling"] == "failed probe"
    assert verdicts["GAN fp32 XLA MFU >= 75% of the fp32 GEMM"] == "failed probe"
    share = report.derived(over)["decode_fraction"]["bf16"]
    assert share.failed and str(share).startswith("failed probe (125%")
    assert str(report.Share(0.5, [0.45, 0.55])) == "50% (45%–55%)"
    ceiling = report.derived(_synthetic(ceiling_steps_per_s=60.0))["gan_mfu_ceiling"]
    assert ceiling.failed and str(ceiling) == "failed probe (120%)"


def test_spread_and_modes_of_repeats():
    import report

    assert report.modes([1000.0, 999.6, 1000.1, 1699.0, 1688.0]) == "bimodal"
    assert report.modes([18.2, 28.0, 28.6, 29.3, 30.9]) == "one outlier"
    assert report.modes([33.2, 34.7, 33.5, 34.6, 35.2]) == ""
    assert report.modes([20.0, 24.0, 28.0, 32.0]) == "wide"
    # the committed run's training repeats: the medians' ratio (1.81x) describes no round, and the rounds straddle
    # the goal, so the check is neither met nor missed
    r = _synthetic()
    r["train"]["tokens_per_s"] = {"bare_fit": 1000.2, "aigc_tf": 1812.8, "aigc_tf_bf16": 1773.6}
    r["train"]["tokens_per_s_repeats"] = {"bare_fit": [1699.0, 999.6, 1688.4, 1000.2, 1000.1],
                                          "aigc_tf": [1000.2, 1812.8, 1837.8, 1835.4, 999.8],
                                          "aigc_tf_bf16": [1801.6, 1000.2, 1792.4, 1000.4, 1773.6]}
    name, goal, measured, verdict = [row for row in report.targets(r) if row[0].startswith("training")][0]
    assert verdict == "unsettled" and measured == "1.81x (per round 0.59x–1.84x, bimodal)"
    variants = r["train"]["tokens_per_s"]
    r["train"].update(model={"num_layers": 2, "hidden_dim": 8, "batch_size": 1, "sequence_length": 4},
                      first_call_s=dict.fromkeys(variants, 1.0), loss_after_equal_steps=dict.fromkeys(variants, 1.0),
                      equal_steps=1)
    lines = report._train_section(r, r["train"])
    assert any(line.startswith("| bare_fit | 1,000 (1,000–1,699, bimodal) |") for line in lines)
    assert any("separate modes" in line for line in lines)


def test_the_probe_takes_the_best_configuration_and_records_it(monkeypatch):
    import machine

    clock = [0.0]
    durations = iter([9.0, 1.0, 0.25, 0.5])  # warm-up (compile), then 3 samples of one call each (>= SAMPLE_SECONDS)

    def call():
        clock[0] += next(durations)

    monkeypatch.setattr(machine, "time", SimpleNamespace(perf_counter=lambda: clock[0]))
    assert machine.best_rate(call, work=100.0, repeats=3) == pytest.approx(400.0)  # the best sample, not the median
    monkeypatch.undo()

    shapes = [(8, 8, 8), (4, 16, 2)]
    probed = machine.gemm_probe("fp32", 1, shapes=shapes, rate=lambda call, work, repeats: work)  # rate = FLOPs
    assert probed == {f"{kernel} {machine.shape_name(*shape)}": 2 * np.prod(shape) / 1e9
                      for shape in shapes for kernel in machine.GEMM_KERNELS}
    assert machine._parse_config("xla [1024,256]x[256,50257]") == ("xla", (1024, 256, 50257))
    monkeypatch.setattr(machine, "gemm_probe", lambda dtype, repeats, **kw: {"a": 3.0, "b": 7.0, "c": 5.0})
    assert machine.gemm_gflops("fp32") == 7.0

    gemm = {"fp32": {"function [2,2]x[2,2]": 90.0, "xla [2,2]x[2,2]": 120.0, "xla [4,4]x[4,4]": 80.0},
            "bf16": {"function [2,2]x[2,2]": 200.0, "xla [2,2]x[2,2]": 110.0}}
    read = {"reduce_sum_xla 512 MB": 20.0, "matvec 512 MB": 31.0}
    monkeypatch.setattr(machine, "gemm_probe", lambda dtype, repeats, **kw: dict(gemm[dtype]))
    monkeypatch.setattr(machine, "read_probe", lambda repeats, **kw: dict(read))
    monkeypatch.setattr(machine, "machine", lambda: "test machine")
    monkeypatch.setattr(machine, "thread_settings", lambda cpu: [])
    monkeypatch.setattr(machine, "PROBE_LOG", [])
    result = machine.probes(repeats=1)
    assert result["gemm_gflops"] == {"fp32": 120.0, "bf16": 200.0} and result["bandwidth_gbs"] == 31.0
    entry = result["probe_log"][-1]
    assert entry["gemm_best"] == {"fp32": "xla [2,2]x[2,2]", "bf16": "function [2,2]x[2,2]"}
    assert entry["read_best"] == "matvec 512 MB" and entry["gemm"] == gemm and entry["read"] == read
    assert set(result["cpu"]["flags"]) == set(machine.CPU_FLAGS)
    machine.probes(repeats=1)  # the end-of-run probe lands in the list the start's results already hold
    assert len(result["probe_log"]) == 2


def test_cpu_info_reads_flags_and_cores():
    import machine

    block = ("processor\t: {i}\nvendor_id\t: AuthenticAMD\ncpu family\t: 25\nmodel\t\t: 1\nphysical id\t: 0\n"
             "core id\t\t: {core}\nflags\t\t: fpu sse avx avx2 fma\n")
    text = "\n".join(block.format(i=i, core=i // 2) for i in range(4))  # 2 cores x 2 SMT siblings
    info = machine.cpu_info(text)
    assert info["flags"] == {"fma": True, "avx2": True, "avx512f": False, "avx512_bf16": False, "amx_tile": False,
                             "amx_bf16": False}
    assert (info["family"], info["logical_cpus"], info["physical_cores"]) == ("25", 4, 2)
    assert machine.thread_settings(info) == [2]
    assert machine.thread_settings({**info, "physical_cores": 4}) == []


def test_report_renders_a_run_without_the_new_probe_fields(tmp_path):
    """The committed results.json (or any run before multi-kernel probes) still renders, its ratios recomputed."""
    import report

    r = json.loads((BENCH / "results.json").read_text())
    for key in ("probe_log", "cpu"):
        r.pop(key, None)
    path, _ = report.write(r, tmp_path)
    text = path.read_text()
    assert "CPU flags: not recorded" in text and "predates the multi-kernel probes" in text
    ratios = report.derived(r)
    gan = r["gan"]
    assert ratios["gan_mfu_ceiling"].value == pytest.approx(
        gan["gemm_ceiling_steps_per_s"] * gan["flops_per_step"] / (r["gemm_gflops"]["fp32"] * 1e9))
    assert str(ratios["gan_mfu_ceiling"]) in text
