"""RESULTS.md and the plots from one run's results.json: figures, targets met or not, and what limits each.

Everything written here is computed from the measurements of the same run; nothing is typed in by hand.

Every ratio to a ceiling is recomputed here from the raw measurements (steps/s, tokens/s, FLOPs, weight bytes) and
one denominator per kind (`denominators`), not read from the sections' stored ratios: those were taken against the
start-of-run probe and rescaled by run.py one by one, and one that was missed (the GAN's `mfu_gemm_ceiling`) made a
pair of MFU figures divide by two different peaks. A ceiling ratio above 100% is not a result but a probe that missed
the machine's peak: it reads "failed probe" and fails its check. Rates come with the spread of their repeats, and
repeats that fall into separate modes are named, since their median alone would describe neither.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

# A served variant: the in-process loop it exports (the default exports run without XLA, as a stock server does).
SERVED = {"served": "fp32_no_xla", "served_bf16": "bf16_no_xla", "served_xla": "fp32"}
MODE_GAP = 1.3  # sorted repeats that jump by more than this factor belong to different modes
VERDICTS = {"met": "met", "missed": "**missed**", "failed probe": "**failed probe** (ratio above its ceiling)",
            "unsettled": "**unsettled** (bimodal repeats straddle the goal)"}


def _f(value, digits=1):
    return "-" if value is None else f"{value:,.{digits}f}"


def _pct(value):
    return "-" if value is None else f"{value:.0%}"


def _dtype(variant: str) -> str:
    return "bf16" if "bf16" in variant else "fp32"


def modes(values) -> str:
    """How `values` (one figure's repeats) disagree: "" (within MODE_GAP), "bimodal" (two or more groups of at least
    two repeats each, split by gaps wider than MODE_GAP), "one outlier" (all but one together), "scattered" (split,
    but not into groups of two or more), "wide" (max/min above MODE_GAP with no single such gap)."""
    v = sorted(x for x in values if x is not None)
    if len(v) < 2 or v[0] <= 0:
        return ""
    groups, current = [], [v[0]]
    for previous, value in zip(v, v[1:]):
        if value / previous > MODE_GAP:
            groups.append(current)
            current = []
        current.append(value)
    groups.append(current)
    if len(groups) == 1:
        return "wide" if v[-1] / v[0] > MODE_GAP else ""
    if sum(len(g) >= 2 for g in groups) >= 2:
        return "bimodal"
    return "one outlier" if len(v) - max(len(g) for g in groups) == 1 else "scattered"


def _unsettled(*series) -> bool:
    return any(modes(s) in ("bimodal", "scattered", "wide") for s in series)


def _spread(values, fmt) -> str:
    """" (min–max[, modes])" of the repeats, "" when there are none."""
    values = [x for x in values or [] if x is not None]
    if len(values) < 2:
        return ""
    label = modes(values)
    return f" ({fmt(min(values))}–{fmt(max(values))}{', ' + label if label else ''})"


def _rate(value, repeats, digits=1) -> str:
    return _f(value, digits) + _spread(repeats, lambda x: _f(x, digits))


@dataclass
class Share:
    """A ratio to a ceiling (MFU, fraction of bandwidth): the figure from the medians and the same ratio per repeat."""

    value: float
    repeats: list = field(default_factory=list)

    @property
    def failed(self) -> bool:
        """Above its ceiling, in the median or in any repeat: the probe missed the machine's peak."""
        return max([self.value, *self.repeats]) > 1.0

    def __str__(self) -> str:
        if self.failed:
            top = max(self.repeats, default=self.value)
            return f"failed probe ({self.value:.0%}{f', repeats up to {top:.0%}' if top > self.value else ''})"
        return f"{self.value:.0%}" + _spread(self.repeats, lambda x: f"{x:.0%}")


def denominators(r: dict) -> dict:
    """The one denominator of each kind of ratio in this run (run.py keeps the better of the start and end probes).

    fp32 figures divide by the fp32 GEMM peak; bf16 (mixed_bfloat16) figures by the better of the bf16 and fp32 peaks,
    since a mixed-precision step may run its GEMMs in either (on an AVX2-only CPU bf16 is emulated and slower);
    decoding by the memory read bandwidth.
    """
    gemm = r["gemm_gflops"]
    return {"fp32": gemm["fp32"], "bf16": max(gemm.get("bf16", 0.0), gemm["fp32"]), "bandwidth": r["bandwidth_gbs"]}


def derived(r: dict) -> dict:
    """Every ratio to a ceiling in this run, as `Share`s, from the raw measurements and `denominators` alone.

    "gan_mfu" {variant}, "gan_mfu_ceiling", "gan_mfu_no_dropout", "gan_scaling_mfu" {batch}; "decode_fraction"
    {variant}, "decode_floor_ms" {variant} (floats); "train_mfu" {variant}.
    """
    d, out = denominators(r), {}
    gan = r.get("gan")
    if gan:
        flops, batch = gan["flops_per_step"], gan["batch_size"]
        reps = gan.get("steps_per_s_repeats", {})

        def mfu(steps_per_s, variant="xla", batch_size=batch):  # the step's FLOPs are linear in the batch
            return steps_per_s * flops * batch_size / batch / (d[_dtype(variant)] * 1e9)

        out["gan_mfu"] = {k: Share(mfu(v, k), [mfu(x, k) for x in reps.get(k, [])])
                          for k, v in gan["steps_per_s"].items()}
        if "gemm_ceiling_steps_per_s" in gan:
            out["gan_mfu_ceiling"] = Share(mfu(gan["gemm_ceiling_steps_per_s"]))
        no_dropout = gan.get("attribution_steps_per_s", {}).get("xla_no_dropout")
        if no_dropout:
            out["gan_mfu_no_dropout"] = Share(mfu(no_dropout))
        out["gan_scaling_mfu"] = {b: Share(mfu(row["steps_per_s"], batch_size=int(b)))
                                  for b, row in gan.get("scaling", {}).items()}
    dec = r.get("decode")
    if dec:
        bandwidth = d["bandwidth"] * 1e9
        rates = {**dec["tokens_per_s"], **dec.get("not_shipped_tokens_per_s", {})}
        reps = dec.get("tokens_per_s_repeats", {})
        wb = dec["weight_bytes"]
        out["decode_fraction"] = {k: Share(v * wb[k] / bandwidth, [x * wb[k] / bandwidth for x in reps.get(k, [])])
                                  for k, v in rates.items() if k in wb}
        out["decode_floor_ms"] = {k: wb[k] / bandwidth * 1e3 for k in rates if k in wb}
    train = r.get("train")
    if train:
        per_token, reps = train["flops_per_token"], train.get("tokens_per_s_repeats", {})
        out["train_mfu"] = {k: Share(v * per_token / (d[_dtype(k)] * 1e9),
                                     [x * per_token / (d[_dtype(k)] * 1e9) for x in reps.get(k, [])])
                            for k, v in train["tokens_per_s"].items()}
    return out


def _ratio_row(name: str, goal: float, num: float, den: float, num_reps=(), den_reps=(), goal_text=None) -> tuple:
    """A "variant A >= goal x variant B" check: the ratio of the medians, and the spread of the per-round ratios
    (alternated rounds pair each repeat of A with B's); "unsettled" when the repeats fall into modes on both sides of
    the goal, where the medians' ratio describes no round."""
    value = num / den
    paired = [a / b for a, b in zip(num_reps, den_reps) if b] if len(num_reps) == len(den_reps) else []
    measured = f"{value:.2f}x" + (_spread(paired, lambda x: f"{x:.2f}x").replace(" (", " (per round ", 1)
                                  if paired else "")
    verdict = "met" if value >= goal else "missed"
    if paired and _unsettled(paired, num_reps, den_reps) and min(paired) < goal <= max(paired):
        verdict = "unsettled"
    return name, goal_text or (f"{goal:.1f}x" if round(goal, 1) == goal else f"{goal:.2f}x"), measured, verdict


def _share_row(name: str, goal: float, share: Share) -> tuple:
    verdict = "met" if share.value >= goal else "missed"
    if share.failed:
        verdict = "failed probe"
    elif _unsettled(share.repeats) and min(share.repeats) < goal <= max(share.repeats):
        verdict = "unsettled"
    return name, f"{goal:.0%}", str(share), verdict


def targets(r: dict) -> list[tuple[str, str, str, str]]:
    """(target, goal, measured, verdict): verdict one of VERDICTS."""
    rows, ratios = [], derived(r)
    gan = r.get("gan")
    if gan:
        sps, reps = gan["steps_per_s"], gan.get("steps_per_s_repeats", {})
        rows.append(_ratio_row("GAN `xla_pipeline` >= 0.97x `xla`", 0.97, sps["xla_pipeline"], sps["xla"],
                               reps.get("xla_pipeline", []), reps.get("xla", [])))
        rows.append(_share_row("GAN fp32 XLA MFU >= 75% of the fp32 GEMM", 0.75, ratios["gan_mfu"]["xla"]))
        best = max(sps["bf16_function"], sps["bf16_xla"])
        best_reps = [max(a, b) for a, b in zip(reps.get("bf16_function", []), reps.get("bf16_xla", []))]
        rows.append(_ratio_row("GAN bf16 (best of function/XLA) >= 1.3x fp32 XLA", 1.3, best, sps["xla"],
                               best_reps, reps.get("xla", [])))
        if "fid" in gan:
            ratio = gan["fid"]["fid_ratio_bf16"]
            rows.append((f"GAN bf16 FID within 10% of fp32 ({gan['fid']['steps']} steps each)", "<= 1.10x",
                         f"{ratio:.2f}x", "met" if ratio <= 1.10 else "missed"))
    dec = r.get("decode")
    if dec:
        tps, reps = dec["tokens_per_s"], dec.get("tokens_per_s_repeats", {})
        base = tps["keras_hub_default"]
        rows.append(_ratio_row("decode default path (`fp32`) >= 1.0x keras-hub default", 1.0, tps["fp32"], base,
                               reps.get("fp32", []), reps.get("keras_hub_default", [])))
        shipped = {k: v for k, v in tps.items() if k in ("fp32", "fp32_no_xla", "bf16", "bf16_no_xla")}
        fastest = max(shipped, key=shipped.get)
        rows.append(_ratio_row(f"decode fastest shipped variant (`{fastest}`) >= 2.0x keras-hub default", 2.0,
                               shipped[fastest], base, reps.get(fastest, []), reps.get("keras_hub_default", [])))
        rows.append(_share_row(f"decode `{fastest}` >= 60% of the bandwidth ceiling", 0.6,
                               ratios["decode_fraction"][fastest]))
        if "perplexity_ratio" in dec:
            ratio = dec["perplexity_ratio"].get(fastest, 1.0)
            rows.append((f"decode `{fastest}` perplexity ratio <= 1.02", "1.02", f"{ratio:.4f}",
                         "met" if ratio <= 1.02 else "missed"))
        for served, in_process in SERVED.items():
            if served in tps and in_process in tps:
                rows.append(_ratio_row(f"`{served}` >= 1/1.1 of in-process `{in_process}`", 1 / 1.1, tps[served],
                                       tps[in_process], reps.get(served, []), reps.get(in_process, []), "0.91x"))
        if "served" in tps:  # what a stock model server gives, against the project's best in-process path
            rows.append(_ratio_row("`served` (stock server, no XLA) >= 1.0x keras-hub default", 1.0, tps["served"],
                                   base, reps.get("served", []), reps.get("keras_hub_default", [])))
    train = r.get("train")
    if train:
        t, reps = train["tokens_per_s"], train.get("tokens_per_s_repeats", {})
        rows.append(_ratio_row("training `aigc_tf` >= 0.95x `bare_fit`", 0.95, t["aigc_tf"], t["bare_fit"],
                               reps.get("aigc_tf", []), reps.get("bare_fit", [])))
    return rows


def _gan_section(r, gan) -> list[str]:
    sps, first = gan["steps_per_s"], gan["first_call_s"]
    reps, mfu, d = gan.get("steps_per_s_repeats", {}), derived(r)["gan_mfu"], denominators(r)
    lines = ["## GAN train step", "",
             f"Batch {gan['batch_size']}, the default MLP nets, both networks updated per step; "
             f"{gan['flops_per_step'] / 1e9:.3f} GFLOP of matmuls per step (counted from the Dense shapes). "
             f"MFU against the same run's GEMM peak in the variant's precision: fp32 {_f(d['fp32'])} GFLOP/s, bf16 "
             f"{_f(d['bf16'])} GFLOP/s (the better of the bf16 and fp32 peaks: a mixed-bf16 step may run its GEMMs "
             "in either). Steps/s and MFU: median (min–max over the repeats).", "",
             "| variant | steps/s | x eager | x function | MFU | first call (s) |", "|---|---:|---:|---:|---:|---:|"]
    for k, v in sps.items():
        lines.append(f"| {k} | {_rate(v, reps.get(k))} | {v / sps['eager']:.2f} | {v / sps['function']:.2f} | "
                     f"{mfu[k]} | {_f(first.get(k, first.get('xla') if k == 'xla_pipeline' else None), 2)} |")
    lines += ["", f"Input pipeline: {gan['pipeline_wait_share']:.1%} of the pipelined loop's time is spent waiting "
              f"in `next()`; alone (no step) it delivers {_f(gan['pipeline_alone_batches_per_s'], 0)} batches/s, i.e. "
              f"{1e3 / gan['pipeline_alone_batches_per_s']:.1f} ms of this machine's CPU per batch against "
              f"{1e3 / sps['xla']:.1f} ms per XLA step.", "", "Batch scaling (XLA):", "", "| batch | steps/s | examples/s | MFU |",
              "|---:|---:|---:|---:|"]
    scaling_mfu = derived(r)["gan_scaling_mfu"]
    for b, row in gan["scaling"].items():
        lines.append(f"| {b} | {_f(row['steps_per_s'])} | {_f(row['examples_per_s'], 0)} | {scaling_mfu[b]} |")
    if "fid" in gan:
        fid = gan["fid"]
        lines += ["", f"Quality at equal budget ({fid['steps']} steps, batch 64): FID fp32 (XLA) "
                  f"{fid['fp32']['fid']:.2f}, bf16 (tf.function) {fid['bf16']['fid']:.2f} (ratio "
                  f"{fid['fid_ratio_bf16']:.2f}; real-data floor {fid['fp32']['real_fid_floor']:.2f}); training "
                  f"time {fid['fp32']['train_s']:.0f} s vs {fid['bf16']['train_s']:.0f} s."]
    return lines


def _decode_section(r, dec) -> list[str]:
    tps, wb, reps = dec["tokens_per_s"], dec["weight_bytes"], dec.get("tokens_per_s_repeats", {})
    ratios = derived(r)
    frac, floor = ratios["decode_fraction"], ratios["decode_floor_ms"]
    base = tps["keras_hub_default"]
    all_tps = {**tps, **dec.get("not_shipped_tokens_per_s", {})}
    lines = ["## GPT-2 decoding", "",
             f"GPT-2 {dec['model'].get('num_layers')} layers, hidden {dec['model'].get('hidden_dim')} (random "
             f"weights), batch 1, {dec['prompt_tokens']}-token prompt, "
             f"{dec['new_tokens']} new greedy tokens. Bandwidth ceiling = read bandwidth "
             f"({_f(denominators(r)['bandwidth'])} GB/s, same run) / weight bytes read per token. Tokens/s and "
             "fraction of bandwidth: median (min–max over the repeats).", "",
             "| variant | new tokens/s | x keras-hub default | ms/token | weight-read floor (ms) | MB/token | "
             "of bandwidth | first call (s) | perplexity ratio |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    ppl = dec.get("perplexity_ratio", {})
    for k, v in all_tps.items():
        shipped = "" if k in tps else " (not shipped)"
        lines.append(f"| {k}{shipped} | {_rate(v, reps.get(k))} | {v / base:.2f} | {dec['ms_per_token'][k]:.1f} | "
                     f"{floor[k]:.1f} | {wb[k] / 1e6:.0f} | {frac[k]} | "
                     f"{_f(dec['first_call_s'].get(k), 1)} | {_f(ppl.get(k), 4) if k in ppl else '-'} |")
    exports = ", ".join(f"`{k}` {v:.0f} s (Session load {dec['served_load_s'][k]:.0f} s)"
                        for k, v in dec["export_s"].items())
    lines += ["", f"Export of the served models: {exports}. Token agreement with keras-hub's greedy output: "
              + ", ".join(f"{k} {v:.0%}" for k, v in dec["token_agreement"].items()) + "."]
    if "perplexity" in dec:
        info = dec["perplexity_text"]
        lines += ["", f"Perplexity: the trained demo model `{info['run']}` on {info['held_out_windows']} held-out "
                  f"windows of {info['corpus']} ({info['tokens']:,} tokens): fp32 {dec['perplexity']['fp32']:.2f}, "
                  f"bf16 {dec['perplexity']['bf16']:.2f}."]
    sc = dec["scaling"]
    lines += ["", "Scaling of the default path (`fp32`, XLA):", "", "| batch (16-token prompt) | new tokens/s | "
              "ms per step |", "|---:|---:|---:|"]
    lines += [f"| {b} | {_f(row['tokens_per_s'])} | {row['ms_per_step']:.1f} |" for b, row in sc["batch"].items()]
    lines += ["", "| prompt tokens (batch 1) | new tokens/s | ms per step |", "|---:|---:|---:|"]
    lines += [f"| {p} | {_f(row['tokens_per_s'])} | {row['ms_per_step']:.1f} |" for p, row in sc["prompt"].items()]
    return lines


def _serve_section(r, serve) -> list[str]:
    lines = ["## GPT-2 served: concurrent clients", "",
             f"`bench/serve.py`: the default `aigc-tf text export` ({serve['precision']}, no XLA) of GPT-2 124M "
             "(random weights) in a fresh process with XLA switched off as `tensorflow_model_server` does by default, "
             "loaded with the Session-based loader. Each client sends one "
             f"{serve['prompt_tokens']}-token prompt to `generate_tokens` for {serve['new_tokens']} greedy tokens, "
             f"{serve['requests_per_client']} requests back to back. `batching` runs them through "
             "`aigc_tf.serving.batching`, TF Serving's BatchingSession modelled rule for rule from its source (queue, "
             "batch threads, padding with each tensor's first element, splitting), with the parameters of "
             "`aigc-tf serving config --batching` (a model of the server, not the server). First request with no "
             f"warm-up: {serve['first_request_s']:.2f} s."]
    if "batching_16" in serve["table"] and "concurrent_1" in serve["table"]:
        ratio = serve["table"]["batching_16"]["tokens_per_s"] / serve["table"]["concurrent_1"]["tokens_per_s"]
        lines[-1] += f" Batching at 16 clients serves {ratio:.1f}x the tokens/s of one client."
    lines += ["",
             "| server | clients | served tokens/s | p50 latency (s) | p95 latency (s) |", "|---|---:|---:|---:|---:|"]
    lines += [f"| {row['mode']} | {row['clients']} | {_f(row['tokens_per_s'])} | {row['p50_s']:.2f} | "
              f"{row['p95_s']:.2f} |" for row in serve["table"].values()]
    return lines


def _train_section(r, train) -> list[str]:
    t, first, reps = train["tokens_per_s"], train["first_call_s"], train.get("tokens_per_s_repeats", {})
    mfu, d = derived(r)["train_mfu"], denominators(r)
    m = train["model"]
    lines = ["## GPT-2 training", "",
             f"{m['num_layers']} layers, hidden {m['hidden_dim']}, batch {m['batch_size']} x {m['sequence_length']}"
             f" tokens, XLA; {train['flops_per_token'] / 1e6:.1f} MFLOP per token (6N + attention). MFU against the "
             f"run's GEMM peak in the variant's precision (fp32 {_f(d['fp32'])}, bf16 {_f(d['bf16'])} GFLOP/s). "
             "Tokens/s and MFU: median (min–max over the repeats).", "",
             "| variant | tokens/s | x bare_fit | MFU | first call (s) | loss after equal steps |",
             "|---|---:|---:|---:|---:|---:|"]
    for k, v in t.items():
        lines.append(f"| {k} | {_rate(v, reps.get(k), 0)} | {v / t['bare_fit']:.2f} | {mfu[k]} | "
                     f"{_f(first[k], 1)} | {train['loss_after_equal_steps'][k]:.4f} |")
    lines += ["", f"Losses after {train['equal_steps']} steps from the same weights on the same windows "
              "(`bare_fit` has no warm-up schedule, so compare `aigc_tf` with `aigc_tf_bf16`)."]
    split = [k for k in t if modes(reps.get(k, [])) in ("bimodal", "scattered")]
    if split:
        lines += ["", f"The repeats of {', '.join(f'`{k}`' for k in split)} fall into separate modes (see the "
                  "ranges): their medians, and the ratios between them, describe no single repeat; the per-round "
                  "ratios in the targets table are the figures to read."]
    return lines


def limits(r: dict) -> list[str]:
    """What bounds each figure, from this run's own measurements."""
    out = ["## What limits each figure (from this run's measurements)", ""]
    gan, dec, ratios = r.get("gan"), r.get("decode"), derived(r)
    if gan:
        sc, sps = gan["scaling"], gan["steps_per_s"]
        step_ms = 1e3 / sps["xla"]
        trend = ", ".join(f"batch {b}: {ratios['gan_scaling_mfu'][b]}" for b in sc)
        out.append(f"- GAN: MFU grows with the batch ({trend}): at batch {gan['batch_size']} the step's matmuls are "
                   "small ([256, <=1024] x [<=1024, <=1024]) and the step also runs elementwise work, Adam updates of "
                   "both nets and two tapes, none of which the GEMM peak counts; the larger batch shows how much of "
                   "the gap is per-step fixed cost rather than matmul speed.")
        other_ms = None
        if "gan_mfu_ceiling" in ratios:
            ceiling, step = ratios["gan_mfu_ceiling"], ratios["gan_mfu"]["xla"]
            other_ms = step_ms - 1e3 / gan["gemm_ceiling_steps_per_s"]  # the step's time outside its matmuls
            verdict = ("above 100%: the GEMM probe missed this CPU's peak, so every MFU here overstates the truth"
                       if ceiling.failed else "the ceiling of these shapes on this CPU")
            out.append(f"- GAN, the 75% MFU target: the step's own matmul shapes, run alone in one XLA program with "
                       f"nothing else, reach {ceiling.value:.0%} of the same fp32 GEMM peak as every MFU here "
                       f"({_f(gan['gemm_ceiling_steps_per_s'])} steps/s): {verdict}. The XLA step (MFU {step.value:.0%}) "
                       f"reaches {step.value / ceiling.value:.0%} of it; the other {other_ms:.1f} ms of the step's "
                       f"{step_ms:.1f} ms are BatchNorm, LeakyReLU, Dropout, the losses and two Adam updates "
                       "(memory-bound work the GEMM peak does not count).")
        no_dropout = gan.get("attribution_steps_per_s", {}).get("xla_no_dropout")
        if no_dropout and other_ms:
            masks = step_ms - 1e3 / no_dropout
            out.append(f"- GAN, where the non-matmul time goes: the same XLA step without D's Dropout runs "
                       f"{_f(no_dropout)} steps/s ({1e3 / no_dropout:.1f} ms, MFU {ratios['gan_mfu_no_dropout']}"
                       f"): Dropout (drawing its random masks and applying them) costs {masks:.1f} ms per step, "
                       f"{masks / other_ms:.0%} of the non-matmul "
                       "time. Dropout is part of the model (it keeps D from memorising), so it stays; a cheaper "
                       "mask generator would change every published training result.")
        out.append(f"- GAN input pipeline: `xla_pipeline` runs at {sps['xla_pipeline'] / sps['xla']:.2f}x `xla` while "
                   f"waiting in `next()` only {gan['pipeline_wait_share']:.1%} of the time: the batches are ready, but "
                   f"producing one costs {1e3 / gan['pipeline_alone_batches_per_s']:.1f} ms of CPU in tf.data's "
                   f"threads ({sps['xla'] / gan['pipeline_alone_batches_per_s']:.0%} of an XLA step's "
                   f"{1e3 / sps['xla']:.1f} ms), taken from the same {r['machine'].split(', ')[1]} the step runs on.")
        kernels = _best_by_kernel(r, "bf16")
        evidence = (f"; this run's bf16 GEMM probe: oneDNN (tf.function) up to {_f(kernels['function'])}, XLA up to "
                    f"{_f(kernels['xla'])} GFLOP/s" if {"function", "xla"} <= set(kernels) else "")
        out.append(f"- GAN bf16: plain tf.function (oneDNN bf16 GEMM; bf16 peak {_f(r['gemm_gflops']['bf16'])} GFLOP/s"
                   f" vs {_f(r['gemm_gflops']['fp32'])} fp32 in this run) reaches {sps['bf16_function'] / sps['xla']:.2f}x"
                   f" the fp32 XLA step; under XLA bf16 gives {sps['bf16_xla'] / sps['xla']:.2f}x (XLA's CPU bf16 dot "
                   f"does not use the AVX-512 BF16 GEMM{evidence}).")
    if dec:
        tps, ms, floor = dec["tokens_per_s"], dec["ms_per_token"], ratios["decode_floor_ms"]
        base = ms["keras_hub_default"]
        out.append(f"- decode, the 2x target: keras-hub's default takes {base:.1f} ms per token, so 2x needs "
                   f"{base / 2:.1f} ms, while reading fp32 weights alone takes {floor['fp32']:.1f} ms at this run's "
                   f"bandwidth: fp32 cannot reach 2x here (at best {base / floor['fp32']:.2f}x, at 100% of the "
                   f"bandwidth); halving the bytes (bf16, floor {floor['bf16']:.1f} ms) is the way past it.")
        for k in ("keras_hub_default", "fp32", "bf16"):
            rest = (f"the remaining {ms[k] - floor[k]:.1f} ms is compute and per-op overhead" if ms[k] >= floor[k] else
                    f"it ran {floor[k] - ms[k]:.1f} ms faster than that floor, {ratios['decode_fraction'][k]} of the "
                    "bandwidth: the read probe missed this machine's bandwidth")
            out.append(f"- decode `{k}`: {ms[k]:.1f} ms per token, of which reading its {dec['weight_bytes'][k] / 1e6:.0f}"
                       f" MB of weights at the measured bandwidth takes {floor[k]:.1f} ms; {rest}.")
        sc = dec["scaling"]["batch"]
        if "1" in sc and len(sc) > 1:
            last = list(sc)[-1]
            out.append(f"- decode scaling: batch {last} costs {sc[last]['ms_per_step'] / sc['1']['ms_per_step']:.1f}x"
                       f" batch 1's time per step for {last}x the tokens: at batch 1 the weights are read once per "
                       "token, at larger batches once per step for all rows, until the matmuls become compute-bound.")
        sp = dec["scaling"]["prompt"]
        if len(sp) > 1:
            out.append("- decode against prompt length: " + ", ".join(
                f"{p} tokens: {_f(row['tokens_per_s'])} tok/s" for p, row in sp.items())
                + " (the prefill is one compute-bound pass; each new token's attention reads a cache that grows "
                  "with the prompt).")
        not_shipped = dec.get("not_shipped_tokens_per_s", {})
        if "bf16_whole_loop" in not_shipped:
            whole = 1e3 / not_shipped["bf16_whole_loop"]
            out.append(f"- decode bf16, compiled per step vs as one XLA loop: {ms['bf16']:.1f} vs {whole:.1f} ms per "
                       f"token (fp32: {ms['fp32']:.1f}). Inside one XLA `while` the bf16 -> fp32 convert of each "
                       "weight is loop-invariant, XLA hoists it out of the loop, and every token then reads fp32 "
                       "weights; compiled per step the convert stays fused into the matvec (see "
                       "`aigc_tf/text/kv_decoder.py`).")
        for served, in_process in SERVED.items():
            if served not in tps or in_process not in tps:
                continue
            gap = ms[served] - ms[in_process]
            out.append(f"- `{served}` vs in-process `{in_process}`: {tps[served] / tps[in_process]:.2f}x "
                       f"({ms[served]:.1f} vs {ms[in_process]:.1f} ms per token, {gap * dec['new_tokens']:+.0f} ms per "
                       f"{dec['new_tokens']}-token call): the loop in a TF1 Session behind the signature's "
                       "tokenizer-free path, per-request controls and sampling branch.")
        if "served" in tps and "fp32" in tps:
            out.append(f"- a stock model server (XLA off) against the in-process XLA decoder: `served` "
                       f"{ms['served']:.1f} vs `fp32` {ms['fp32']:.1f} ms per token ({tps['served'] / tps['fp32']:.2f}x);"
                       " `aigc-tf text export --xla` with the server flag gives `served_xla` "
                       f"({_f(tps.get('served_xla'))} tokens/s).")
    return out


def _probe_runs(r: dict) -> list[tuple[str, dict]]:
    """(label, entry) for each `probe_log` entry ("start"/"end" when the run kept both); [] for older runs."""
    log = r.get("probe_log") or []
    labels = ["start", "end"] if len(log) == 2 else [f"probe {i + 1}" for i in range(len(log))]
    return list(zip(labels, log))


def _best_by_kernel(r: dict, dtype: str) -> dict[str, float]:
    """The best GFLOP/s each GEMM kernel ("function", "xla") reached in this run's probes, in `dtype`."""
    best: dict[str, float] = {}
    for _, entry in _probe_runs(r):
        for name, value in entry["gemm"].get(dtype, {}).items():
            kernel = name.split(" ", 1)[0]
            best[kernel] = max(best.get(kernel, 0.0), value)
    return best


def _winner(r: dict, dtype: str | None = None) -> str | None:
    """The probe configuration that gave this run's GEMM peak in `dtype` (None: the read peak), and when."""
    best = None
    for label, entry in _probe_runs(r):
        rates = entry["read"] if dtype is None else entry["gemm"].get(dtype, {})
        for name, value in rates.items():
            if best is None or value > best[0]:
                best = (value, f"`{name}` ({label})")
    return best[1] if best else None


def references(r: dict) -> list[str]:
    """The run's ceilings, where each came from, the CPU's flags, and what a ratio above 100% means."""
    d, gemm = denominators(r), r["gemm_gflops"]
    taken = "; ".join(f"{when}: fp32 {_f(p['gemm_gflops']['fp32'])}, bf16 {_f(p['gemm_gflops']['bf16'])} GFLOP/s, "
                      f"{_f(p['bandwidth_gbs'])} GB/s" for when, p in r.get("probes", {}).items())
    text = (f"Same-run references, the one denominator of every ratio below: fp32 GEMM {_f(d['fp32'])} GFLOP/s, bf16 "
            f"GEMM {_f(gemm['bf16'])} GFLOP/s, memory read bandwidth {_f(d['bandwidth'])} GB/s, each the best of the "
            f"probes at the start and at the end of the run{f' ({taken})' if taken else ''}. ")
    runs = _probe_runs(r)
    if runs:
        entry = runs[-1][1]
        text += (f"A probe is the best over {len(entry['gemm']['fp32'])} GEMM configurations per precision (shapes "
                 "under tf.function, i.e. oneDNN, and under XLA) and "
                 f"{len(entry['read'])} read kernels (sums, vector x matrix as decoding runs it, matrix x vector; "
                 "two sizes), each configuration the best of its repeats (table at the end); the peaks came from "
                 f"{_winner(r, 'fp32')} in fp32, {_winner(r, 'bf16')} in bf16 and {_winner(r)} for reads. ")
    else:
        text += ("This run predates the multi-kernel probes: its GEMM peak is one shape ([1024,256]x[256,50257], "
                 "oneDNN) and its bandwidth one XLA reduce_sum, each a median of 5, which need not be this machine's "
                 "peak. ")
    cpu = r.get("cpu")
    if cpu:
        flags = ", ".join(f"{k} {'yes' if v else 'no'}" for k, v in cpu["flags"].items())
        text += (f"CPU: {cpu.get('vendor')} family {cpu.get('family')} model {cpu.get('model')}, "
                 f"{cpu.get('physical_cores')} cores / {cpu.get('logical_cpus')} logical CPUs; {flags}. ")
    else:
        text += "CPU flags: not recorded in this run. "
    text += ("A ratio to one of these ceilings above 100% is not a result: the probe missed the machine's peak, the "
             "figure reads \"failed probe\" and its check fails.")
    return [text]


def _probe_section(r: dict) -> list[str]:
    """Every probe configuration's figure, start and end, the winners in bold."""
    runs = _probe_runs(r)
    if not runs:
        return []
    lines = ["## Probe configurations", "", "GEMM GFLOP/s, each the best of its repeats:", "",
             "| configuration | " + " | ".join(f"{dtype} {when}" for dtype in ("fp32", "bf16") for when, _ in runs)
             + " |", "|---|" + "---:|" * (2 * len(runs))]

    def cell(rates, name, best):
        return "-" if name not in rates else (f"**{_f(rates[name])}**" if name == best else _f(rates[name]))

    names = list(dict.fromkeys(n for _, e in runs for dtype in ("fp32", "bf16") for n in e["gemm"].get(dtype, {})))
    for name in names:
        lines.append(f"| {name} | " + " | ".join(cell(e["gemm"].get(dtype, {}), name, e["gemm_best"].get(dtype))
                                                 for dtype in ("fp32", "bf16") for _, e in runs) + " |")
    lines += ["", "Read GB/s, each the best of its repeats:", "", "| kernel | " + " | ".join(w for w, _ in runs)
              + " |", "|---|" + "---:|" * len(runs)]
    for name in dict.fromkeys(n for _, e in runs for n in e["read"]):
        lines.append(f"| {name} | " + " | ".join(cell(e["read"], name, e["read_best"]) for _, e in runs) + " |")
    threads = runs[-1][1].get("intra_op_threads", {})
    tried = threads.get("tried") or []
    lines += ["", f"Intra-op threads: TensorFlow's default ({threads.get('default')})"
              + (f", and {', '.join(map(str, tried))} in a fresh process (rows marked @)" if tried else
                 "; no other count tried (TensorFlow fixes its thread pools when it starts, and without SMT "
                 "siblings there is no per-core count below the default to try)")
              + ". Probe time: " + ", ".join(f"{w} {e['seconds']:.0f} s" for w, e in runs) + "."]
    return lines


def write(r: dict, folder: Path) -> tuple[Path, list[Path]]:
    folder = Path(folder)
    plots = write_plots(r, folder / "plots")
    lines = ["# Benchmark results", "",
             f"Machine: {r['machine']}. Run {r['date']}{' (--quick: smoke run, figures meaningless)' if r['quick'] else ''}"
             f", {r['repeats']} alternated repeats per variant (median), {r['seconds']['total'] / 60:.1f} min in all.",
             ""] + references(r) + ["", "Regenerate with `make bench` (this file, results.json and "
             "plots/ come from one run; only ratios within one run count: these VMs drift by up to 2x).", "",
             "## Targets", "", "Ratios between variants: the ratio of the medians, then the range of the per-round "
             "ratios (variants alternate, so each round pairs one repeat of each).", "",
             "| target | goal | measured | |", "|---|---:|---:|---|"]
    lines += [f"| {name} | {goal} | {got} | {VERDICTS[verdict]} |" for name, goal, got, verdict in targets(r)]
    for key, fn in (("gan", _gan_section), ("decode", _decode_section), ("serve", _serve_section),
                    ("train", _train_section)):
        if key in r:
            lines += [""] + fn(r, r[key])
    lines += [""] + limits(r)
    probes = _probe_section(r)
    lines += ([""] + probes if probes else [])
    decisions = Path(__file__).with_name("DECISIONS.md")  # measured once, while a design choice was made
    if decisions.is_file():
        lines += [""] + decisions.read_text().strip().splitlines()
    lines += ["", "## Plots", ""] + [f"![{p.stem}](plots/{p.name})" for p in plots]
    path = folder / "RESULTS.md"
    path.write_text("\n".join(lines) + "\n")
    return path, plots


def write_plots(r: dict, folder: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    written = []

    def save(fig, name):
        path = folder / name
        fig.tight_layout()
        fig.savefig(path, dpi=100)
        plt.close(fig)
        written.append(path)

    if "decode" in r:
        dec = r["decode"]
        tps = {**dec["tokens_per_s"], **dec.get("not_shipped_tokens_per_s", {})}
        fig, ax = plt.subplots(figsize=(7, 3.5))
        shipped = dec["tokens_per_s"]
        ax.barh(list(tps), list(tps.values()), color=["tab:blue" if k in shipped else "tab:gray" for k in tps])
        for k, frac in derived(r)["decode_fraction"].items():
            label = " failed probe" if frac.failed else f" {frac.value:.0%} of bandwidth"
            ax.text(tps[k], k, label, va="center", fontsize=8)
        ax.set_xlim(0, max(tps.values()) * 1.3)  # room for the labels
        ax.set_xlabel("new tokens/s (batch 1, GPT-2 124M)")
        ax.set_title("Decoding variants (grey: measured, not shipped)")
        save(fig, "decode_variants.png")
        fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
        for ax, axis, label in ((axes[0], "batch", "batch size (16-token prompt)"),
                                (axes[1], "prompt", "prompt tokens (batch 1)")):
            rows = dec["scaling"][axis]
            xs = [int(k) for k in rows]
            ax.plot(xs, [row["tokens_per_s"] for row in rows.values()], "o-")
            ax.set_xscale("log", base=2)
            ax.set_xlabel(label)
            ax.set_ylabel("new tokens/s")
            ax.grid(alpha=0.3)
        fig.suptitle("Decoding scaling (fp32, XLA)")
        save(fig, "decode_scaling.png")
    if "serve" in r:
        table = r["serve"]["table"]
        fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
        for mode, color in (("concurrent", "tab:blue"), ("batching", "tab:orange")):
            rows = [row for row in table.values() if row["mode"] == mode]
            clients = [row["clients"] for row in rows]
            axes[0].plot(clients, [row["tokens_per_s"] for row in rows], "o-", color=color, label=mode)
            axes[1].plot(clients, [row["p50_s"] for row in rows], "o-", color=color, label=f"{mode}: median")
            axes[1].plot(clients, [row["p95_s"] for row in rows], "o--", color=color, alpha=0.5,
                         label=f"{mode}: 95th percentile")
        for ax, label in ((axes[0], "served tokens/s (all clients)"), (axes[1], "seconds per request")):
            ax.set_xscale("log", base=2)
            ax.set_xticks(sorted({row["clients"] for row in table.values()}))
            ax.set_xticklabels([str(t) for t in ax.get_xticks()])
            ax.set_xlabel("concurrent clients")
            ax.set_ylabel(label)
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8)
        model = "the small demo GPT-2" if r.get("quick") else "GPT-2 124M"
        fig.suptitle(f"{model} served as a stock TF Serving runs it (XLA off), "
                     f"{r['serve']['new_tokens']} new tokens per request")
        save(fig, "serve_concurrency.png")
    if "gan" in r:
        gan = r["gan"]
        fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
        sps = gan["steps_per_s"]
        axes[0].barh(list(sps), list(sps.values()), color="tab:green")
        axes[0].set_xlabel(f"steps/s (batch {gan['batch_size']})")
        rows = gan["scaling"]
        xs = [int(k) for k in rows]
        axes[1].plot(xs, [share.value * 100 for share in derived(r)["gan_scaling_mfu"].values()], "o-")
        axes[1].set_xscale("log", base=2)
        axes[1].set_xlabel("batch size (XLA)")
        axes[1].set_ylabel("MFU (% of fp32 GEMM)")
        axes[1].grid(alpha=0.3)
        fig.suptitle("GAN train step")
        save(fig, "gan_step.png")
    if "train" in r:
        t = r["train"]["tokens_per_s"]
        fig, ax = plt.subplots(figsize=(6, 2.5))
        ax.barh(list(t), list(t.values()), color="tab:orange")
        ax.set_xlabel("training tokens/s")
        save(fig, "train.png")
    return written
