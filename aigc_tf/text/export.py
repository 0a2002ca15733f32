"""GPT-2 as a SavedModel for TF Serving: string prompts in, text out, with tokenizer, KV-cached decoding and
detokenizer all inside the graph, so a client needs no Python of ours."""

from __future__ import annotations

import json
import math
from pathlib import Path

import keras
import tensorflow as tf

from aigc_tf import AigcError
from aigc_tf.config import to_json
from aigc_tf.serving.layout import publish
from aigc_tf.serving.model_config import XLA_FLAG


# Generation controls a TF Serving client may send beside the prompts, one value for all prompts or one per prompt,
# and what each signature uses when a request leaves them out (recorded as the SignatureDef's `defaults`).
CONTROLS = {  # name: (dtype, meaning)
    "max_new_tokens": (tf.int32, "tokens to add after each prompt (>= 1)"),
    "temperature": (tf.float32, "0: greedy; > 0: sample softmax(logits / temperature)"),
    "top_k": (tf.int32, "sample among the k likeliest tokens (0: no limit)"),
    "top_p": (tf.float32, "sample among the smallest set of tokens whose probability reaches p, in (0, 1]"),
    "seed": (tf.int32, "same seed, same text; -1 draws a fresh seed"),
}


def export_text(run_dir: Path | None = None, model_dir: Path = Path("saved_models/gpt2"), max_new_tokens: int = 48,
                top_p: float = 0.9, temperature: float = 1.0, xla: bool = False, precision: str = "auto",
                preset: str | None = None) -> Path:
    """Export a text run, or a keras-hub GPT-2 `preset` (a local folder or a hub handle), with generation inside
    the graph, so a TF Serving client needs no Python of ours.

    Signatures (N prompts; the outputs include the prompt, as `aigc-tf text generate` prints them):
    - `serving_default(prompts: string [N], ...) -> text: string [N]`: greedy by default, the same text as
      `aigc-tf text generate --sampler greedy`. Tokenizer, KV-cached decoding loop and detokenizer are all in the
      graph; the BPE tokenizer needs TF Text's ops (linked into the stock model server).
    - `sample(prompts, ...) -> text`: the same graph with sampling defaults (top-p `top_p`, `temperature`) and a
      fresh draw on every call.
    - `generate_tokens(token_ids: int32 [N, L], padding_mask: int32 [N, L], ...) -> token_ids, padding_mask:
      int32 [N, T]`: the same decoding on GPT-2 token ids, core TensorFlow ops only, for servers without TF Text.
      Prompts are left-aligned, start token first, `padding_mask` 1 on prompt tokens.
    Each also takes the optional per-request controls of `CONTROLS` (shape [1] for all prompts, or [N]); left out,
    they take the signature's defaults (`max_new_tokens` defaults to `max_new_tokens` here). TF Serving lets a
    request omit an input only when the SignatureDef has `defaults` (`predict_util.cc`); they are written there.

    `xla=False` (the default) exports a graph a stock `tensorflow_model_server` runs: it disables XLA unless started
    with `--xla_cpu_compilation_enabled=true`. `xla=True` compiles the decoder's forward pass with XLA (faster; each
    batch size and length bucket compiles on first use, and the server needs the flag).
    `precision`: "fp32", "bf16" (half the bytes read per token) or "auto" (bf16 for an XLA export where this CPU has
    native bf16 dot products, else fp32: `aigc_tf.hardware.resolve_precision`).

    Input from the outside world, handled in the graph so that no request crashes the server:
    - an empty prompt generates from the start token alone; a prompt is cut to the model's context, and generation
      stops there;
    - bytes that are not UTF-8 are replaced by U+FFFD before tokenizing (the reply is valid UTF-8);
    - a batch of prompts of mixed lengths: each reply is what that prompt alone would get;
    - a control out of range, or with neither 1 nor N values, is an InvalidArgument error naming it;
    - a wrong dtype is rejected by the signature itself, a wrong rank by its first op (`ensure_shape`).
    """
    from aigc_tf.hardware import resolve_precision
    from aigc_tf.text.kv_decoder import KVCacheDecoder
    from aigc_tf.text.models import load_preset, load_text_run, with_precision

    if (run_dir is None) == (preset is None):
        raise AigcError("export a text run or a keras-hub `preset`: give one of the two")
    precision = resolve_precision(precision, compiled=xla)
    if preset is None:
        causal_lm, config = load_text_run(run_dir)
        provenance = {"run": str(Path(run_dir).resolve()), "config": json.loads(to_json(config))}
    else:  # the model is all an export needs: its own context bounds the prompts
        causal_lm, local = load_preset(str(preset), dtype="float32"), Path(preset).expanduser()
        provenance = {"preset": str(local.resolve()) if local.exists() else str(preset)}
    causal_lm = with_precision(causal_lm, precision)
    context = causal_lm.backbone.max_sequence_length
    if not 1 <= max_new_tokens < context:
        raise AigcError(f"max_new_tokens must be in [1, {context - 1}] (the model's context is {context}), "
                        f"got {max_new_tokens}")
    if not 0 < top_p <= 1 or not temperature > 0:
        raise AigcError(f"the sample signature needs top_p in (0, 1] and temperature > 0, got {top_p}, {temperature}")
    tokenizer = causal_lm.preprocessor.tokenizer
    tokenizer(["build the tokenizer's tables before tracking them"])
    if not causal_lm.preprocessor.built:
        causal_lm.preprocessor.build(None)
    end_id = tokenizer.end_token_id
    decoder = KVCacheDecoder(causal_lm.backbone, precision, jit_compile=xla, compile_per_step=True)

    def controls(batch, max_new_tokens, temperature, top_k, top_p, seed):
        """Broadcast each control to (N,) and validate it; a bad value fails the request, not the server."""
        values = dict(max_new_tokens=max_new_tokens, temperature=temperature, top_k=top_k, top_p=top_p, seed=seed)
        checks, out = [], {}
        for name, value in values.items():
            value = tf.ensure_shape(value, [None])
            checks.append(tf.debugging.Assert(
                (tf.size(value) == 1) | (tf.size(value) == batch),
                [f"{name} must have one value, or one per prompt; got a number of values of", tf.size(value)]))
            out[name] = value
        bounds = {"max_new_tokens": (out["max_new_tokens"] >= 1) & (out["max_new_tokens"] < context),
                  "temperature": (out["temperature"] >= 0) & tf.math.is_finite(out["temperature"]),
                  "top_k": out["top_k"] >= 0,
                  "top_p": (out["top_p"] > 0) & (out["top_p"] <= 1)}
        rules = {"max_new_tokens": f"in [1, {context - 1}]", "temperature": ">= 0 (0 is greedy)",
                 "top_k": ">= 0 (0 is no limit)", "top_p": "in (0, 1]"}
        for name, ok in bounds.items():
            checks.append(tf.debugging.Assert(tf.reduce_all(ok), [f"{name} must be {rules[name]}; got",
                                                                   out[name]], summarize=8))
        with tf.control_dependencies(checks):
            out = {k: tf.broadcast_to(tf.identity(v), [batch]) for k, v in out.items()}
        fresh = tf.random.uniform([batch], 0, 2**31 - 1, tf.int32)  # stateful: a new draw on every request
        out["seed"] = tf.where(out["seed"] < 0, fresh, out["seed"])
        return out

    def decode(token_ids, padding_mask, max_new_tokens, temperature, top_k, top_p, seed):
        """Prompt tokens (N, L) -> {token_ids, padding_mask} (N, T): T = the longest prompt + max_new_tokens, capped
        at the context (rounded up to a multiple of 32 under XLA, where every shape is its own program)."""
        batch = tf.shape(token_ids)[0]
        c = controls(batch, max_new_tokens, temperature, top_k, top_p, seed)
        token_ids, padding_mask = token_ids[:, :context], tf.cast(padding_mask[:, :context], tf.bool)
        lengths = tf.maximum(tf.reduce_sum(tf.cast(padding_mask, tf.int32), -1), 1)
        total = needed = tf.minimum(tf.reduce_max(lengths + c["max_new_tokens"]), context)
        prefill = tf.reduce_min(lengths)
        if xla:  # few shapes: the length in buckets of 32, the prefill a power of two
            total = tf.minimum((needed + 31) // 32 * 32, context)
            prefill = tf.cast(2 ** tf.floor(tf.math.log(tf.cast(prefill, tf.float32)) / math.log(2.0)), tf.int32)
        pad = tf.maximum(total - tf.shape(token_ids)[1], 0)
        token_ids = tf.pad(token_ids, [[0, 0], [0, pad]])[:, :total]
        padding_mask = tf.pad(padding_mask, [[0, 0], [0, pad]])[:, :total]
        out = decoder.sample(token_ids, padding_mask, prefill, tf.constant(end_id), c["max_new_tokens"],
                             c["temperature"], c["top_k"], c["top_p"], c["seed"])
        return {k: v[:, :needed] for k, v in out.items()}  # the bucket's padding is not the client's

    def text_endpoint(defaults):
        """A string signature whose controls default to `defaults` (Tensors: recorded as the SignatureDef's)."""
        def serve(prompts, max_new_tokens=defaults["max_new_tokens"], temperature=defaults["temperature"],
                  top_k=defaults["top_k"], top_p=defaults["top_p"], seed=defaults["seed"]):
            prompts = tf.ensure_shape(prompts, [None])  # a scalar or a matrix is an error status, not a guess
            prompts = tf.strings.unicode_transcode(prompts, "UTF-8", "UTF-8", errors="replace")  # U+FFFD
            inputs = causal_lm.preprocessor.generate_preprocess(prompts, sequence_length=context)
            out = decode(inputs["token_ids"], inputs["padding_mask"], max_new_tokens, temperature, top_k, top_p, seed)
            ids, keep = out["token_ids"], out["padding_mask"]
            for special in tokenizer.special_token_ids:
                keep = keep & (ids != special)
            return {"text": tokenizer.detokenize(tf.ragged.boolean_mask(ids, keep))}
        return serve

    def token_endpoint(defaults):
        def serve(token_ids, padding_mask, max_new_tokens=defaults["max_new_tokens"],
                  temperature=defaults["temperature"], top_k=defaults["top_k"], top_p=defaults["top_p"],
                  seed=defaults["seed"]):
            token_ids = tf.ensure_shape(token_ids, [None, None])
            padding_mask = tf.ensure_shape(padding_mask, [None, None])
            out = decode(token_ids, padding_mask, max_new_tokens, temperature, top_k, top_p, seed)
            return {"token_ids": out["token_ids"], "padding_mask": tf.cast(out["padding_mask"], tf.int32)}
        return serve

    def control_defaults(temperature, top_p):
        return {"max_new_tokens": tf.constant([max_new_tokens], tf.int32),
                "temperature": tf.constant([temperature], tf.float32), "top_k": tf.constant([0], tf.int32),
                "top_p": tf.constant([top_p], tf.float32), "seed": tf.constant([-1], tf.int32)}

    control_specs = [tf.TensorSpec([None], dtype, name=name) for name, (dtype, _) in CONTROLS.items()]
    prompt_spec = [tf.TensorSpec([None], tf.string, name="prompts")]
    token_specs = [tf.TensorSpec([None, None], tf.int32, name="token_ids"),
                   tf.TensorSpec([None, None], tf.int32, name="padding_mask")]
    greedy, sampling = control_defaults(0.0, 1.0), control_defaults(temperature, top_p)
    archive = keras.export.ExportArchive()
    archive.track(tokenizer)  # its vocabulary tables (lookup tables are not captured like variables)
    archive.add_endpoint("serving_default", text_endpoint(greedy), input_signature=prompt_spec + control_specs)
    archive.add_endpoint("sample", text_endpoint(sampling), input_signature=prompt_spec + control_specs)
    archive.add_endpoint("generate_tokens", token_endpoint(greedy), input_signature=token_specs + control_specs)
    return publish(archive, model_dir, {
        "family": "text", **provenance, "max_new_tokens": max_new_tokens, "top_p": top_p,
        "temperature": temperature, "end_token_id": end_id, "precision": precision, "xla": xla,
        "server_needs": ([XLA_FLAG] if xla else []) +
                        ["TF Text ops (linked into the stock model server) for serving_default and sample"]})
