"""RESULTS.md and the plots from one run's results.json: figures, targets met or not, and what limits each.

Everything written here is computed from the measurements of the same run; nothing is typed in by hand.
"""

from __future__ import annotations

from pathlib import Path

# A served variant: the in-process loop it exports (the default exports run without XLA, as a stock server does).
SERVED = {"served": "fp32_no_xla", "served_bf16": "bf16_no_xla", "served_xla": "fp32"}


def _f(value, digits=1):
    return "-" if value is None else f"{value:,.{digits}f}"


def _pct(value):
    return "-" if value is None else f"{value:.0%}"


def _ok(flag):
    return "met" if flag else "**missed**"


def targets(r: dict) -> list[tuple[str, str, str, bool]]:
    rows = []
    gan = r.get("gan")
    if gan:
        sps = gan["steps_per_s"]
        rows.append(("GAN `xla_pipeline` >= 0.97x `xla`", "0.97x", f"{sps['xla_pipeline'] / sps['xla']:.2f}x",
                     sps["xla_pipeline"] / sps["xla"] >= 0.97))
        rows.append(("GAN fp32 XLA MFU >= 75% of the fp32 GEMM", "75%", _pct(gan["mfu_xla"]), gan["mfu_xla"] >= 0.75))
        best = max(sps["bf16_function"], sps["bf16_xla"])
        rows.append(("GAN bf16 (best of function/XLA) >= 1.3x fp32 XLA", "1.3x", f"{best / sps['xla']:.2f}x",
                     best / sps["xla"] >= 1.3))
        if "fid" in gan:
            ratio = gan["fid"]["fid_ratio_bf16"]
            rows.append((f"GAN bf16 FID within 10% of fp32 ({gan['fid']['steps']} steps each)", "<= 1.10x",
                         f"{ratio:.2f}x", ratio <= 1.10))
    dec = r.get("decode")
    if dec:
        tps = dec["tokens_per_s"]
        base = tps["keras_hub_default"]
        rows.append(("decode default path (`fp32`) >= 1.0x keras-hub default", "1.0x", f"{tps['fp32'] / base:.2f}x",
                     tps["fp32"] / base >= 1.0))
        shipped = {k: v for k, v in tps.items() if k in ("fp32", "fp32_no_xla", "bf16", "bf16_no_xla")}
        fastest = max(shipped, key=shipped.get)
        rows.append((f"decode fastest shipped variant (`{fastest}`) >= 2.0x keras-hub default", "2.0x",
                     f"{shipped[fastest] / base:.2f}x", shipped[fastest] / base >= 2.0))
        frac = dec["fraction_of_bandwidth"][fastest]
        rows.append((f"decode `{fastest}` >= 60% of the bandwidth ceiling", "60%", _pct(frac), frac >= 0.6))
        if "perplexity_ratio" in dec:
            ratio = dec["perplexity_ratio"].get(fastest, 1.0)
            rows.append((f"decode `{fastest}` perplexity ratio <= 1.02", "1.02", f"{ratio:.4f}", ratio <= 1.02))
        for served, in_process in SERVED.items():
            if served in tps and in_process in tps:
                ratio = tps[served] / tps[in_process]
                rows.append((f"`{served}` >= 1/1.1 of in-process `{in_process}`", "0.91x", f"{ratio:.2f}x",
                             ratio >= 1 / 1.1))
        if "served" in tps:  # what a stock model server gives, against the project's best in-process path
            ratio = tps["served"] / base
            rows.append(("`served` (stock server, no XLA) >= 1.0x keras-hub default", "1.0x", f"{ratio:.2f}x",
                         ratio >= 1.0))
    train = r.get("train")
    if train:
        t = train["tokens_per_s"]
        rows.append(("training `aigc_tf` >= 0.95x `bare_fit`", "0.95x", f"{t['aigc_tf'] / t['bare_fit']:.2f}x",
                     t["aigc_tf"] / t["bare_fit"] >= 0.95))
    return rows


def _gan_section(r, gan) -> list[str]:
    sps, mfu, first = gan["steps_per_s"], gan["mfu"], gan["first_call_s"]
    lines = ["## GAN train step", "",
             f"Batch {gan['batch_size']}, the default MLP nets, both networks updated per step; "
             f"{gan['flops_per_step'] / 1e9:.3f} GFLOP of matmuls per step (counted from the Dense shapes). "
             f"MFU against the same run's fp32 GEMM ({_f(r['gemm_gflops']['fp32'])} GFLOP/s).", "",
             "| variant | steps/s | x eager | x function | MFU | first call (s) |", "|---|---:|---:|---:|---:|---:|"]
    for k, v in sps.items():
        lines.append(f"| {k} | {_f(v)} | {v / sps['eager']:.2f} | {v / sps['function']:.2f} | {_pct(mfu[k])} | "
                     f"{_f(first.get(k, first.get('xla') if k == 'xla_pipeline' else None), 2)} |")
    lines += ["", f"Input pipeline: {gan['pipeline_wait_share']:.1%} of the pipelined loop's time is spent waiting "
              f"in `next()`; alone (no step) it delivers {_f(gan['pipeline_alone_batches_per_s'], 0)} batches/s, i.e. "
              f"{1e3 / gan['pipeline_alone_batches_per_s']:.1f} ms of this machine's CPU per batch against "
              f"{1e3 / sps['xla']:.1f} ms per XLA step.", "", "Batch scaling (XLA):", "", "| batch | steps/s | examples/s | MFU |",
              "|---:|---:|---:|---:|"]
    for b, row in gan["scaling"].items():
        lines.append(f"| {b} | {_f(row['steps_per_s'])} | {_f(row['examples_per_s'], 0)} | {_pct(row['mfu'])} |")
    if "fid" in gan:
        fid = gan["fid"]
        lines += ["", f"Quality at equal budget ({fid['steps']} steps, batch 64): FID fp32 (XLA) "
                  f"{fid['fp32']['fid']:.2f}, bf16 (tf.function) {fid['bf16']['fid']:.2f} (ratio "
                  f"{fid['fid_ratio_bf16']:.2f}; real-data floor {fid['fp32']['real_fid_floor']:.2f}); training "
                  f"time {fid['fp32']['train_s']:.0f} s vs {fid['bf16']['train_s']:.0f} s."]
    return lines


def _decode_section(r, dec) -> list[str]:
    tps, wb, frac = dec["tokens_per_s"], dec["weight_bytes"], dec["fraction_of_bandwidth"]
    base = tps["keras_hub_default"]
    all_tps = {**tps, **dec.get("not_shipped_tokens_per_s", {})}
    lines = ["## GPT-2 decoding", "",
             f"GPT-2 {dec['model'].get('num_layers')} layers, hidden {dec['model'].get('hidden_dim')} (random "
             f"weights), batch 1, {dec['prompt_tokens']}-token prompt, "
             f"{dec['new_tokens']} new greedy tokens. Bandwidth ceiling = read bandwidth "
             f"({_f(r['bandwidth_gbs'])} GB/s, same run) / weight bytes read per token.", "",
             "| variant | new tokens/s | x keras-hub default | ms/token | weight-read floor (ms) | MB/token | "
             "of bandwidth | first call (s) | perplexity ratio |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    ppl = dec.get("perplexity_ratio", {})
    for k, v in all_tps.items():
        shipped = "" if k in tps else " (not shipped)"
        lines.append(f"| {k}{shipped} | {_f(v)} | {v / base:.2f} | {dec['ms_per_token'][k]:.1f} | "
                     f"{dec['weight_read_floor_ms'][k]:.1f} | {wb[k] / 1e6:.0f} | {_pct(frac[k])} | "
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
             f"{serve['requests_per_client']} requests back to back. `batching` merges queued requests as TF "
             "Serving's `--enable_batching` does, with the parameters of `aigc-tf serving config --batching` (a model "
             "of the server's BatchingSession, not the server). First request with no warm-up: "
             f"{serve['first_request_s']:.2f} s.", "",
             "| server | clients | served tokens/s | p50 latency (s) | p95 latency (s) |", "|---|---:|---:|---:|---:|"]
    lines += [f"| {row['mode']} | {row['clients']} | {_f(row['tokens_per_s'])} | {row['p50_s']:.2f} | "
              f"{row['p95_s']:.2f} |" for row in serve["table"].values()]
    return lines


def _train_section(r, train) -> list[str]:
    t, first = train["tokens_per_s"], train["first_call_s"]
    m = train["model"]
    lines = ["## GPT-2 training", "",
             f"{m['num_layers']} layers, hidden {m['hidden_dim']}, batch {m['batch_size']} x {m['sequence_length']}"
             f" tokens, XLA; {train['flops_per_token'] / 1e6:.1f} MFLOP per token (6N + attention).", "",
             "| variant | tokens/s | x bare_fit | MFU | first call (s) | loss after equal steps |",
             "|---|---:|---:|---:|---:|---:|"]
    for k, v in t.items():
        lines.append(f"| {k} | {_f(v, 0)} | {v / t['bare_fit']:.2f} | {_pct(train['mfu_by_variant'][k])} | "
                     f"{_f(first[k], 1)} | {train['loss_after_equal_steps'][k]:.4f} |")
    lines += ["", f"Losses after {train['equal_steps']} steps from the same weights on the same windows "
              "(`bare_fit` has no warm-up schedule, so compare `aigc_tf` with `aigc_tf_bf16`)."]
    return lines


def limits(r: dict) -> list[str]:
    """What bounds each figure, from this run's own measurements."""
    out = ["## What limits each figure (from this run's measurements)", ""]
    gan, dec = r.get("gan"), r.get("decode")
    if gan:
        sc, sps = gan["scaling"], gan["steps_per_s"]
        step_ms = 1e3 / sps["xla"]
        trend = ", ".join(f"batch {b}: {_pct(row['mfu'])}" for b, row in sc.items())
        out.append(f"- GAN: MFU grows with the batch ({trend}): at batch {gan['batch_size']} the step's matmuls are "
                   "small ([256, <=1024] x [<=1024, <=1024]) and the step also runs elementwise work, Adam updates of "
                   "both nets and two tapes, none of which the GEMM peak counts; the larger batch shows how much of "
                   "the gap is per-step fixed cost rather than matmul speed.")
        if "mfu_gemm_ceiling" in gan:
            ceiling = gan["mfu_gemm_ceiling"]
            other_ms = step_ms - 1e3 / gan["gemm_ceiling_steps_per_s"]  # the step's time outside its matmuls
            out.append(f"- GAN, the 75% MFU target: the step's own matmul "
                       f"shapes, run alone in one XLA program with nothing else, reach {_pct(ceiling)} of the probe's "
                       f"GEMM peak ({_f(gan['gemm_ceiling_steps_per_s'])} steps/s): that is the ceiling of these "
                       f"shapes on this CPU. The XLA step reaches {gan['mfu_xla'] / ceiling:.0%} of it; the other "
                       f"{other_ms:.1f} ms of the step's {step_ms:.1f} ms are BatchNorm, LeakyReLU, Dropout, the losses and two Adam updates "
                       "(memory-bound work the GEMM peak does not count).")
        no_dropout = gan.get("attribution_steps_per_s", {}).get("xla_no_dropout")
        if no_dropout and "mfu_gemm_ceiling" in gan:
            masks = step_ms - 1e3 / no_dropout
            out.append(f"- GAN, where the non-matmul time goes: the same XLA step without D's Dropout runs "
                       f"{_f(no_dropout)} steps/s ({1e3 / no_dropout:.1f} ms, MFU {_pct(gan['mfu_xla'] * no_dropout / sps['xla'])}"
                       f"): Dropout (drawing its random masks and applying them) costs {masks:.1f} ms per step, "
                       f"{masks / other_ms:.0%} of the non-matmul "
                       "time. Dropout is part of the model (it keeps D from memorising), so it stays; a cheaper "
                       "mask generator would change every published training result.")
        out.append(f"- GAN input pipeline: `xla_pipeline` runs at {sps['xla_pipeline'] / sps['xla']:.2f}x `xla` while "
                   f"waiting in `next()` only {gan['pipeline_wait_share']:.1%} of the time: the batches are ready, but "
                   f"producing one costs {1e3 / gan['pipeline_alone_batches_per_s']:.1f} ms of CPU in tf.data's "
                   f"threads ({sps['xla'] / gan['pipeline_alone_batches_per_s']:.0%} of an XLA step's "
                   f"{1e3 / sps['xla']:.1f} ms), taken from the same {r['machine'].split(', ')[1]} the step runs on.")
        out.append(f"- GAN bf16: plain tf.function (oneDNN bf16 GEMM, {_f(r['gemm_gflops']['bf16'])} GFLOP/s vs "
                   f"{_f(r['gemm_gflops']['fp32'])} fp32 in this run) reaches {sps['bf16_function'] / sps['xla']:.2f}x"
                   f" the fp32 XLA step; under XLA bf16 gives {sps['bf16_xla'] / sps['xla']:.2f}x (XLA's CPU bf16 dot "
                   "does not use the AVX-512 BF16 GEMM).")
    if dec:
        tps, ms, floor = dec["tokens_per_s"], dec["ms_per_token"], dec["weight_read_floor_ms"]
        base = ms["keras_hub_default"]
        out.append(f"- decode, the 2x target: keras-hub's default takes {base:.1f} ms per token, so 2x needs "
                   f"{base / 2:.1f} ms, while reading fp32 weights alone takes {floor['fp32']:.1f} ms at this run's "
                   f"bandwidth: fp32 cannot reach 2x here (at best {base / floor['fp32']:.2f}x, at 100% of the "
                   f"bandwidth); halving the bytes (bf16, floor {floor['bf16']:.1f} ms) is the way past it.")
        for k in ("keras_hub_default", "fp32", "bf16"):
            out.append(f"- decode `{k}`: {ms[k]:.1f} ms per token, of which reading its {dec['weight_bytes'][k] / 1e6:.0f}"
                       f" MB of weights at the measured bandwidth takes {floor[k]:.1f} ms; the remaining "
                       f"{max(ms[k] - floor[k], 0):.1f} ms is compute and per-op overhead.")
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


def write(r: dict, folder: Path) -> tuple[Path, list[Path]]:
    folder = Path(folder)
    plots = write_plots(r, folder / "plots")
    lines = ["# Benchmark results", "",
             f"Machine: {r['machine']}. Run {r['date']}{' (--quick: smoke run, figures meaningless)' if r['quick'] else ''}"
             f", {r['repeats']} alternated repeats per variant (median), {r['seconds']['total'] / 60:.1f} min in all.",
             "", f"Same-run references (best of the probes at the start and at the end of the run, each a median "
             f"of 5): fp32 GEMM {_f(r['gemm_gflops']['fp32'])} GFLOP/s, bf16 GEMM {_f(r['gemm_gflops']['bf16'])} "
             f"GFLOP/s ([1024,256]x[256,50257]), memory read bandwidth {_f(r['bandwidth_gbs'])} GB/s ("
             + "; ".join(f"{when}: fp32 {_f(p['gemm_gflops']['fp32'])}, bf16 {_f(p['gemm_gflops']['bf16'])} GFLOP/s, "
                         f"{_f(p['bandwidth_gbs'])} GB/s" for when, p in r["probes"].items()) + ").", "", "Regenerate with `make bench` (this file, results.json and "
             "plots/ come from one run; only ratios within one run count: these VMs drift by up to 2x).", "",
             "## Targets", "", "| target | goal | measured | |", "|---|---:|---:|---|"]
    lines += [f"| {name} | {goal} | {got} | {_ok(ok)} |" for name, goal, got, ok in targets(r)]
    for key, fn in (("gan", _gan_section), ("decode", _decode_section), ("serve", _serve_section),
                    ("train", _train_section)):
        if key in r:
            lines += [""] + fn(r, r[key])
    lines += [""] + limits(r)
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
        for k, frac in dec["fraction_of_bandwidth"].items():
            ax.text(tps[k], k, f" {frac:.0%} of bandwidth", va="center", fontsize=8)
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
        axes[1].plot(xs, [row["mfu"] * 100 for row in rows.values()], "o-")
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
