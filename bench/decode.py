"""GPT-2 batch-1 greedy decoding: keras-hub's default against the project's paths, in-process and served.

GPT-2 124M architecture (random weights: speed does not depend on them), a 16-token prompt, 64 new greedy tokens,
no early stop. Variants, alternated:
- `keras_hub_default`: `GPT2CausalLM.compile(sampler="greedy")` + `generate` (keras-hub's "auto" = no XLA on CPU);
- `fp32`: the project's default greedy path, `aigc_tf.text.kv_decoder.KVCacheDecoder` under XLA;
- `fp32_no_xla`: the same loop without XLA (to pick XLA or not per device);
- `bf16`: bfloat16 weights (`--precision bf16`), one XLA program per token step looped in the graph;
- `bf16_no_xla`: the same weights without XLA (bf16 GEMMs through oneDNN), the loop a stock server runs;
- `served`, `served_bf16`: the project's `aigc-tf text export` SavedModels of the same weights (`--precision fp32`
  and `bf16`), `generate_tokens` signature, run by a TF1 `Session` loader (what a model server does). These are the
  default exports, without XLA, which a stock model server runs (their graphs hold no XLA function or op, so the
  in-process XLA switch does not touch them; `bench/serve.py` runs them with XLA switched off as the server does);
- `served_xla`: `aigc-tf text export --xla` (fp32), for a server started with `--xla_cpu_compilation_enabled`;
- full runs only, not shipped: keras-hub's `generate` under XLA (the project's previous path), with
  `quantize("int8")` + XLA (the int8 evidence), and `bf16_whole_loop`, the bf16 decoder compiled as one XLA loop
  (the evidence for compiling bf16 per step).
The fraction of bandwidth is tokens/s x weight bytes read per token / the same run's read bandwidth.
Perplexity ratios use the trained demo model's held-out text, in each variant's precision.
"""

from __future__ import annotations

import math
import tempfile
import time
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from aigc_tf.config import TextConfig
from aigc_tf.text.kv_decoder import KVCacheDecoder
from machine import alternate, median, seconds

PROMPT_LENGTH, NEW_TOKENS = 16, 64
NOT_SHIPPED = ("keras_hub_xla", "keras_hub_int8_xla", "bf16_whole_loop")
GPT2_124M = dict(num_layers=12, num_heads=12, hidden_dim=768, intermediate_dim=3072, max_sequence_length=1024,
                 dropout=0.0)


def prompt_inputs(batch: int, prompt_length: int, new_tokens: int, seed: int = 0) -> dict:
    """keras-hub's generate layout: (B, prompt + new) ids, left-aligned prompts, mask on the prompt."""
    total = prompt_length + new_tokens
    ids = np.zeros([batch, total], np.int32)
    ids[:, :prompt_length] = np.random.default_rng(seed).integers(0, 50256, [batch, prompt_length])
    mask = np.zeros([batch, total], bool)
    mask[:, :prompt_length] = True
    return {"token_ids": tf.constant(ids), "padding_mask": tf.constant(mask)}


def build_model(config: TextConfig):
    from aigc_tf.text.models import build_causal_lm

    keras.utils.set_random_seed(0)
    return build_causal_lm(config)


def _rate(fn, inputs) -> float:
    new = int(inputs["token_ids"].shape[0]) * NEW_TOKENS
    return new / seconds(lambda: fn(inputs))


def keras_hub_decoder(backbone, jit_compile, quantize: str | None = None):
    import keras_hub

    lm = keras_hub.models.GPT2CausalLM(backbone=backbone, preprocessor=None)
    if quantize:
        lm.quantize(quantize)
    lm.compile(sampler="greedy", **({} if jit_compile == "auto" else {"jit_compile": jit_compile}))
    return lambda inputs: lm.generate(inputs, stop_token_ids=None)["token_ids"]


def kv_decoder(backbone, precision, jit_compile, compile_per_step=None):
    decoder = KVCacheDecoder(backbone, precision, jit_compile=jit_compile, compile_per_step=compile_per_step)
    return decoder, lambda inputs: decoder.generate_step(inputs)["token_ids"]


class SessionServed:
    """The exported SavedModel's `generate_tokens`, loaded with `tf.compat.v1.saved_model.loader` into a Session."""

    def __init__(self, export_dir: Path):
        import tensorflow_text  # noqa: F401  (the string signatures' ops, loaded with the graph)

        self.graph = tf.Graph()
        self.session = tf.compat.v1.Session(graph=self.graph)
        with self.graph.as_default():
            meta = tf.compat.v1.saved_model.loader.load(self.session, ["serve"], str(export_dir))
        signature = meta.signature_def["generate_tokens"]
        self.ids_in = signature.inputs["token_ids"].name
        self.lengths_in = signature.inputs["lengths"].name
        self.ids_out = signature.outputs["token_ids"].name

        self.new_in = signature.inputs["max_new_tokens"].name

    def __call__(self, inputs):
        prompt = inputs["padding_mask"].numpy()
        length = int(prompt.sum(1).min())
        new = inputs["token_ids"].shape[1] - length
        ids = self.session.run(self.ids_out, {self.ids_in: inputs["token_ids"].numpy()[:, :length],
                                              self.lengths_in: np.full([len(prompt)], length, np.int32),
                                              self.new_in: np.full([len(prompt)], new, np.int32)})
        return ids[:, :inputs["token_ids"].shape[1]]  # the reply is as wide as the context: keep prompt + new


def export_model(causal_lm, config: TextConfig, workdir: Path, precision: str, xla: bool = False) -> Path:
    """A run folder holding `causal_lm` as its trained preset, exported with `aigc-tf text export`'s function."""
    from aigc_tf.text.export import export_text
    from aigc_tf.runs import RunFolder

    run = RunFolder(workdir / "run")
    if not (run.path / "preset").exists():
        run.prepare(config)
        causal_lm.save_to_preset(str(run.path / "preset"))
    return export_text(run.path, workdir / f"export_{precision}{'_xla' if xla else ''}", max_new_tokens=NEW_TOKENS,
                       precision=precision, xla=xla)


def measure(config: TextConfig, bandwidth_gbs: float, *, repeats: int = 5, full: bool = True,
            scaling_repeats: int = 3, batches=(1, 4, 16, 64), prompts=(16, 128, 512), text_run: Path | None = None,
            ppl_windows: int = 32) -> dict:
    causal_lm = build_model(config)
    backbone = causal_lm.backbone
    inputs = prompt_inputs(1, PROMPT_LENGTH, NEW_TOKENS)
    fp32_decoder, fp32 = kv_decoder(backbone, "fp32", True)
    bf16_decoder, bf16 = kv_decoder(backbone, "bf16", True)
    fns = {"keras_hub_default": keras_hub_decoder(backbone, "auto"), "fp32": fp32,
           "fp32_no_xla": kv_decoder(backbone, "fp32", False)[1], "bf16": bf16,
           "bf16_no_xla": kv_decoder(backbone, "bf16", False)[1]}
    if full:
        fns["keras_hub_xla"] = keras_hub_decoder(backbone, True)
        fns["bf16_whole_loop"] = kv_decoder(backbone, "bf16", True, compile_per_step=False)[1]
    keras_bytes = int(sum(w.numpy().nbytes for w in backbone.weights)) - \
        int(backbone.position_embedding.weights[0].numpy().nbytes)
    weight_bytes = {"keras_hub_default": keras_bytes, "fp32": fp32_decoder.weight_bytes,
                    "fp32_no_xla": fp32_decoder.weight_bytes, "bf16": bf16_decoder.weight_bytes,
                    "bf16_no_xla": bf16_decoder.weight_bytes,
                    "keras_hub_xla": keras_bytes, "bf16_whole_loop": bf16_decoder.weight_bytes,
                    "served": fp32_decoder.weight_bytes, "served_bf16": bf16_decoder.weight_bytes,
                    "served_xla": fp32_decoder.weight_bytes}
    first_call, export_s, load_s = {}, {}, {}
    with tempfile.TemporaryDirectory(prefix="aigc_bench_") as workdir:
        for name, precision, xla in (("served", "fp32", False), ("served_bf16", "bf16", False),
                                     ("served_xla", "fp32", True)):
            began = time.perf_counter()
            export_dir = export_model(causal_lm, config, Path(workdir), precision, xla)
            export_s[name] = time.perf_counter() - began
            began = time.perf_counter()
            fns[name] = SessionServed(export_dir)
            load_s[name] = time.perf_counter() - began
        reference, agrees = None, {}
        for name, fn in fns.items():
            first_call[name] = seconds(lambda: tf.constant(np.asarray(fn(inputs))))
            tokens = np.asarray(fn(inputs))
            reference = tokens if reference is None else reference
            agrees[name] = float(np.mean(tokens == reference))  # share of keras-hub's greedy tokens matched
        if full:  # int8 after the others: quantizing mutates the model in place
            try:
                int8_lm = build_model(config)
                int8_lm.backbone.set_weights(backbone.get_weights())
                int8 = keras_hub_decoder(int8_lm.backbone, True, quantize="int8")
                first_call["keras_hub_int8_xla"] = seconds(lambda: int8(inputs))
                fns["keras_hub_int8_xla"] = int8
                weight_bytes["keras_hub_int8_xla"] = int(sum(w.numpy().nbytes for w in int8_lm.backbone.weights)) \
                    - int(int8_lm.backbone.position_embedding.weights[0].numpy().nbytes)
            except Exception as err:  # evidence only: a keras-hub/Keras change must not sink the run
                first_call["keras_hub_int8_xla_error"] = f"{type(err).__name__}: {str(err)[:200]}"
        rates = alternate({k: (lambda fn=fn: _rate(fn, inputs)) for k, fn in fns.items()}, repeats)
        for name in ("served", "served_bf16", "served_xla"):
            fns[name].session.close()
    tokens_per_s = {k: median(v) for k, v in rates.items()}
    result = {
        "model": {k: v for k, v in GPT2_124M.items()} if config.num_layers == 12 else config.__dict__.copy(),
        "prompt_tokens": PROMPT_LENGTH, "new_tokens": NEW_TOKENS, "batch": 1,
        "tokens_per_s": {k: v for k, v in tokens_per_s.items() if k not in NOT_SHIPPED},
        "not_shipped_tokens_per_s": {k: v for k, v in tokens_per_s.items() if k in NOT_SHIPPED},
        "tokens_per_s_repeats": rates, "first_call_s": first_call, "token_agreement": agrees, "export_s": export_s, "served_load_s": load_s,
        "weight_bytes": {k: weight_bytes[k] for k in tokens_per_s},
        "fraction_of_bandwidth": {k: tokens_per_s[k] * weight_bytes[k] / (bandwidth_gbs * 1e9)
                                  for k in tokens_per_s},
        "ms_per_token": {k: 1e3 / v for k, v in tokens_per_s.items()},
        "weight_read_floor_ms": {k: weight_bytes[k] / (bandwidth_gbs * 1e9) * 1e3 for k in tokens_per_s},
    }
    result["scaling"] = scaling(backbone, batches, prompts, scaling_repeats)
    result.update(perplexity_ratios(text_run, ppl_windows) if text_run else {})
    return result


def scaling(backbone, batches, prompts, repeats) -> dict:
    """The default fp32 path's new tokens/s against batch (16-token prompt) and prompt length (batch 1)."""
    decoder, fn = kv_decoder(backbone, "fp32", True)
    rows = {"batch": {}, "prompt": {}}
    shapes = [("batch", b, b, PROMPT_LENGTH) for b in batches] + [("prompt", p, 1, p) for p in prompts]
    for axis, key, batch, prompt in shapes:
        if prompt + NEW_TOKENS > backbone.max_sequence_length:
            continue
        inputs = prompt_inputs(batch, prompt, NEW_TOKENS)
        first = seconds(lambda: fn(inputs))
        rate = median([_rate(fn, inputs) for _ in range(repeats)])
        rows[axis][str(key)] = {"tokens_per_s": rate, "ms_per_step": 1e3 * batch / rate, "first_call_s": first}
    return rows


def perplexity_ratios(text_run: Path, windows: int) -> dict:
    """Held-out perplexity of the trained demo model in each shipped precision, and its ratio to fp32."""
    from aigc_tf.text.models import load_text_run
    from aigc_tf.text.train import corpus_windows

    causal_lm, config = load_text_run(text_run)
    _, held_out = corpus_windows(config, causal_lm.preprocessor.tokenizer)
    held_out = held_out[:windows]
    nll = {}
    for name, precision in (("fp32", "fp32"), ("bf16", "bf16")):
        decoder = KVCacheDecoder(causal_lm.backbone, precision, jit_compile=True)
        total, count = 0.0, 0
        for start in range(0, len(held_out), 8):
            chunk = held_out[start:start + 8]
            logits = decoder.logits(chunk[:, :-1])
            losses = keras.losses.sparse_categorical_crossentropy(chunk[:, 1:], logits, from_logits=True)
            total, count = total + float(tf.reduce_sum(losses)), count + int(np.prod(losses.shape))
        nll[name] = total / count
    ppl = {k: math.exp(v) for k, v in nll.items()}
    ppl["served"], ppl["served_bf16"] = ppl["fp32"], ppl["bf16"]  # the same weights and loop, served
    return {"perplexity": ppl, "perplexity_ratio": {k: v / ppl["fp32"] for k, v in ppl.items()},
            "perplexity_text": {"run": str(text_run), "corpus": config.corpus, "held_out_windows": len(held_out),
                                "tokens": int(held_out[:, 1:].size)}}
