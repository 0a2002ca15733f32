"""GPT-2 as a SavedModel for TF Serving: string prompts in, text out, with tokenizer, KV-cached decoding and
detokenizer all inside the graph, so a client needs no Python of ours."""

from __future__ import annotations

import json
import math
from pathlib import Path

import keras
import tensorflow as tf

from aigc_tf import AigcError
from aigc_tf.compat import bpe_tokenize_uncached
from aigc_tf.config import to_json
from aigc_tf.serving.layout import publish
from aigc_tf.serving.model_config import XLA_FLAG


MAX_PROMPT_BYTES = 4096  # a longer prompt is refused before tokenizing (BPE's cost grows with a word's length)

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
    - `generate_tokens(token_ids: int32 [N, L], lengths: int32 [N], ...) -> token_ids: int32 [N, context],
      lengths: int32 [N]`: the same decoding on GPT-2 token ids, core TensorFlow ops only, for servers without TF
      Text. Row b's prompt is its first `lengths[b]` ids (start token first); the ids after it are never read. The
      reply's row b is prompt + new tokens in its first `lengths[b]` places, zeros after.
    Each also takes the optional per-request controls of `CONTROLS` (shape [1] for all prompts, or [N]); left out,
    they take the signature's defaults (`max_new_tokens` defaults to `max_new_tokens` here). TF Serving lets a
    request omit an input only when the SignatureDef has `defaults` (`predict_util.cc`); they are written there.
    Under `--enable_batching` every input must have N rows (`batching_util.h`): clients send each control per
    prompt (`aigc_tf.serving.client` does).

    Batching cannot change an answer (`aigc_tf.serving.batching` models the server's BatchingSession; the bench
    `bench/serve_batching.py` compares every batched answer with the same request alone): no input is read past
    a row's own length, so the server's padding of a shorter request with its first element is never seen; every
    output has a width that does not depend on the batch; and a row's draws depend on its own controls and seed.

    Limits, enforced in the graph with an InvalidArgument error that names them: a prompt of at most
    `MAX_PROMPT_BYTES` bytes and `context - 1` tokens (start token included), `max_new_tokens` in
    [1, context - 1]; generation stops at the context. The tokenizer keeps no cache across requests, so memory
    does not grow with the words a server has seen.

    `xla=False` (the default) exports a graph a stock `tensorflow_model_server` runs: it disables XLA unless started
    with `--xla_cpu_compilation_enabled=true`. `xla=True` compiles the decoder's forward pass with XLA (faster; each
    batch size and length bucket compiles on first use, and the server needs the flag).
    `precision`: "fp32", "bf16" (half the bytes read per token) or "auto" (bf16 for an XLA export where this CPU has
    native bf16 dot products, else fp32: `aigc_tf.hardware.resolve_precision`).

    Input from the outside world, handled in the graph so that no request crashes the server:
    - an empty prompt generates from the start token alone;
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
    max_prompt_tokens = context - 1  # the start token included: room for one new token

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

    def decode(token_ids, lengths, max_new_tokens, temperature, top_k, top_p, seed):
        """Prompts (N, L) of `lengths` tokens -> {token_ids (N, context), lengths (N,)}.

        Only the first `lengths[b]` ids of row b are read, and the reply has the same width whatever the request:
        TF Serving's batching pads a request's token_ids to its batch-mates' width with the request's own first id
        and splits the merged reply back by rows, so neither can change an answer.
        """
        batch = tf.shape(token_ids)[0]
        c = controls(batch, max_new_tokens, temperature, top_k, top_p, seed)
        lengths = tf.ensure_shape(lengths, [None])
        width = tf.shape(token_ids)[1]
        checks = [tf.debugging.Assert(tf.size(lengths) == batch,
                                      ["lengths must have one value per prompt; got a number of values of",
                                       tf.size(lengths)]),
                  tf.debugging.Assert(tf.reduce_all((lengths >= 1) & (lengths <= width)),
                                      ["lengths must be in [1, the width of token_ids]; got", lengths], summarize=8),
                  tf.debugging.Assert(tf.reduce_all(lengths <= max_prompt_tokens),
                                      [f"a prompt may have at most {max_prompt_tokens} tokens, start token "
                                       "included (the model's context less one new token); got", lengths],
                                      summarize=8)]
        with tf.control_dependencies(checks):
            lengths = tf.identity(lengths)
        token_ids = token_ids[:, :max_prompt_tokens]
        padding_mask = tf.sequence_mask(lengths, tf.shape(token_ids)[1])
        token_ids = tf.where(padding_mask, token_ids, 0)  # what follows a prompt is never read
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
        keep = out["padding_mask"][:, :needed]  # a prefix of each row: prompt, then its new tokens
        ids = tf.where(keep, out["token_ids"][:, :needed], 0)
        return {"token_ids": tf.ensure_shape(tf.pad(ids, [[0, 0], [0, context - needed]]), [None, context]),
                "lengths": tf.reduce_sum(tf.cast(keep, tf.int32), -1)}

    def tokenize(prompts):
        """String prompts (N,) -> start token + GPT-2 ids (N, L) and their lengths, with the limits enforced."""
        prompts = tf.ensure_shape(prompts, [None])  # a scalar or a matrix is an error status, not a guess
        size = tf.strings.length(prompts)
        too_long = tf.debugging.Assert(tf.reduce_all(size <= MAX_PROMPT_BYTES), [
            f"a prompt may have at most {MAX_PROMPT_BYTES} bytes; got prompts of", size], summarize=8)
        with tf.control_dependencies([too_long]):  # before the tokenizer sees a byte of it
            prompts = tf.strings.unicode_transcode(prompts, "UTF-8", "UTF-8", errors="replace")  # U+FFFD
        ids = bpe_tokenize_uncached(tokenizer, prompts)
        ids = tf.concat([tf.fill([ids.nrows(), 1], tf.cast(end_id, ids.dtype)), ids], axis=1)  # the start token
        return tf.cast(ids.to_tensor(), tf.int32), tf.cast(ids.row_lengths(), tf.int32)

    def text_endpoint(defaults):
        """A string signature whose controls default to `defaults` (Tensors: recorded as the SignatureDef's)."""
        def serve(prompts, max_new_tokens=defaults["max_new_tokens"], temperature=defaults["temperature"],
                  top_k=defaults["top_k"], top_p=defaults["top_p"], seed=defaults["seed"]):
            token_ids, lengths = tokenize(prompts)
            out = decode(token_ids, lengths, max_new_tokens, temperature, top_k, top_p, seed)
            ids = out["token_ids"]
            keep = tf.sequence_mask(out["lengths"], tf.shape(ids)[1])
            for special in tokenizer.special_token_ids:
                keep = keep & (ids != special)
            text = tokenizer.detokenize(tf.ragged.boolean_mask(ids, keep))
            # Byte-level BPE can stop inside a character: the reply is made valid UTF-8 (TF Serving's REST front
            # end writes a string output's bytes into the JSON as they are).
            return {"text": tf.strings.unicode_transcode(text, "UTF-8", "UTF-8", errors="replace")}
        return serve

    def token_endpoint(defaults):
        def serve(token_ids, lengths, max_new_tokens=defaults["max_new_tokens"],
                  temperature=defaults["temperature"], top_k=defaults["top_k"], top_p=defaults["top_p"],
                  seed=defaults["seed"]):
            token_ids = tf.ensure_shape(token_ids, [None, None])
            return decode(token_ids, lengths, max_new_tokens, temperature, top_k, top_p, seed)
        return serve

    def control_defaults(temperature, top_p):
        return {"max_new_tokens": tf.constant([max_new_tokens], tf.int32),
                "temperature": tf.constant([temperature], tf.float32), "top_k": tf.constant([0], tf.int32),
                "top_p": tf.constant([top_p], tf.float32), "seed": tf.constant([-1], tf.int32)}

    control_specs = [tf.TensorSpec([None], dtype, name=name) for name, (dtype, _) in CONTROLS.items()]
    prompt_spec = [tf.TensorSpec([None], tf.string, name="prompts")]
    token_specs = [tf.TensorSpec([None, None], tf.int32, name="token_ids"),
                   tf.TensorSpec([None], tf.int32, name="lengths")]
    greedy, sampling = control_defaults(0.0, 1.0), control_defaults(temperature, top_p)
    archive = keras.export.ExportArchive()
    archive.track(tokenizer)  # its vocabulary tables (lookup tables are not captured like variables)
    archive.add_endpoint("serving_default", text_endpoint(greedy), input_signature=prompt_spec + control_specs)
    archive.add_endpoint("sample", text_endpoint(sampling), input_signature=prompt_spec + control_specs)
    archive.add_endpoint("generate_tokens", token_endpoint(greedy), input_signature=token_specs + control_specs)
    return publish(archive, model_dir, {
        "family": "text", **provenance, "context": context, "max_new_tokens": max_new_tokens, "top_p": top_p,
        "temperature": temperature, "end_token_id": end_id, "precision": precision, "xla": xla,
        "server_needs": ([XLA_FLAG] if xla else []) +
                        ["TF Text ops (linked into the stock model server) for serving_default and sample"]})
