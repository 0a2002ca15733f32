"""The private APIs aigc_tf relies on, each behind one small adapter.

Keras, keras-hub, TensorFlow and argparse expose no public way to do these few things. Each adapter names what it
reaches into, and `tests/test_compat.py` exercises every one of them against the installed versions, so an upgrade
that moves one fails there, loudly and by name, instead of somewhere deep in training or serving. The same test
reads the package's source and fails if any other module imports `tensorflow.python`, `keras.src` or
`keras_hub.src`, or reads another object's `._private` attribute.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

from aigc_tf import AigcError


def safe_mode_scope():
    """Keras' deserialization scope with every call at its default, `safe_mode=True`.

    keras-hub's `from_preset` has no `safe_mode` argument, and a process may have called
    `keras.config.enable_unsafe_deserialization()`; inside this scope a preset holding Python code (a serialized
    lambda) is refused anyway. (`SafeModeScope(True)` would also refuse keras-hub's own tokenizer assets.)
    Private: `keras.src.saving.serialization_lib.SafeModeScope`.
    """
    from keras.src.saving.serialization_lib import SafeModeScope

    return SafeModeScope(None)


def xla_ops():
    """TensorFlow's wrappers of XLA's own ops (`dynamic_slice`, `dynamic_update_slice`), which update a KV cache in
    place inside an XLA program. Private: `tensorflow.compiler.tf2xla.python.xla`."""
    from tensorflow.compiler.tf2xla.python import xla

    return xla


def build_cache(causal_lm, token_ids):
    """keras-hub's prefill: `(hidden_states, cache)` of a `GPT2CausalLM` for prompt `token_ids`, as `generate_step`
    builds it. Needed to drive a sampler by hand (several beams per prompt). Private: `CausalLM._build_cache`."""
    return causal_lm._build_cache(token_ids)


def set_initial_epoch(model, epoch: int) -> None:
    """Make the next `model.fit` start at `epoch`, the way `keras.callbacks.BackupAndRestore` resumes a run.
    Called from a callback's `on_train_begin`. Private: `Model._initial_epoch`."""
    model._initial_epoch = epoch


_DISABLE_XLA_SYMBOL = "_ZN10tensorflow21DisableXlaCompilationEv"  # tensorflow::DisableXlaCompilation()


def train_under_scope_strategy(model) -> None:
    """Let `model.fit` take its distribution strategy from the enclosing `strategy.scope()` instead of its own.

    A Keras model built under a strategy remembers it, and `fit` then starts with a "symbolic build" that
    MEAN-reduces the first distributed batch across replicas in eager mode; under `MultiWorkerMirroredStrategy`
    that eager reduce fails ("Attempt to convert a value (PerReplica...) to a Tensor", keras-team/keras#20329).
    Every variable of the GAN is built before `fit`, so the build has nothing to do: forgetting the strategy skips
    it, and `fit` run inside `strategy.scope()` distributes the data and the step exactly as before.
    Private: `Model._distribute_strategy`.
    """
    model._distribute_strategy = None


def disable_xla_compilation() -> None:
    """Switch XLA off in this process exactly as `tensorflow_model_server` does by default.

    Call it before running any graph: from then on a `jit_compile=True` function fails with "XLA compilation
    disabled", as it does in the server. Reached with ctypes in TensorFlow's `libtensorflow_cc.so.2`.
    """
    import ctypes

    import tensorflow as tf

    library = Path(tf.__file__).parent / "libtensorflow_cc.so.2"
    try:
        getattr(ctypes.CDLL(str(library)), _DISABLE_XLA_SYMBOL)()
    except (OSError, AttributeError) as err:
        raise AigcError(f"cannot switch XLA off as the model server does ({library}: {err}); "
                        "check with XLA on, knowing the stock server may still refuse XLA signatures") from None


@contextlib.contextmanager
def keras_global_seed_generator(seed: int):
    """Within the block, Keras' unseeded random ops (`keras.random.normal(shape)` without `seed=`) draw from a
    generator seeded with `seed`; the previous generator is put back afterwards.
    Private: `keras.src.backend.common.global_state`, attribute `global_seed_generator`."""
    import keras
    from keras.src.backend.common import global_state

    name = "global_seed_generator"
    previous = global_state.get_global_attribute(name)
    global_state.set_global_attribute(name, keras.random.SeedGenerator(seed))
    try:
        yield
    finally:
        global_state.set_global_attribute(name, previous)


def bpe_tokenize_uncached(tokenizer, prompts):
    """GPT-2 token ids (ragged, N rows) of string `prompts` (N,), as keras-hub's `BytePairTokenizer` computes them
    in a TF graph, without its word cache.

    keras-hub's tokenizer remembers every word it has seen in a `MutableHashTable` that is never emptied; in a
    served graph it is one entry per distinct word of every request for the life of the server, so hostile input
    grows it without bound. This path does the same BPE merges on every call and keeps nothing. Special tokens
    (`<|endoftext|>`), which keras-hub keeps whole by pre-seeding that cache, are kept whole here by name.
    Private: `keras_hub.src.tokenizers.byte_pair_tokenizer.split_strings_for_bpe` and the tokenizer's
    `byte2unicode`, `_bpe_merge_tf`, `token_to_id_map`, `unsplittable_tokens`.
    """
    import tensorflow as tf
    from keras_hub.src.tokenizers.byte_pair_tokenizer import split_strings_for_bpe

    tokenizer._maybe_initialized_tf()
    words = split_strings_for_bpe(prompts, tokenizer.unsplittable_tokens)  # (N, words)
    flat = words.flat_values
    merged = tf.strings.reduce_join(
        tokenizer._bpe_merge_tf(tokenizer.byte2unicode.lookup(tf.strings.bytes_split(flat))),
        axis=1, separator=" ")
    special = tf.zeros_like(flat, tf.bool)
    for token in tokenizer.unsplittable_tokens or []:
        special |= tf.equal(flat, token)
    pieces = tf.strings.split(tf.where(special, flat, merged), sep=" ")  # (words, pieces)
    ids = tokenizer.token_to_id_map.lookup(pieces)
    return tf.RaggedTensor.from_row_splits(ids.flat_values, tf.gather(ids.row_splits, words.row_splits))


def registered_op(op_type: str):
    """The `OpDef` this process has registered for `op_type`, or None: a library's ops (TF Text's) are registered
    only once it is imported, which is how the serving check tells core ops from library ones.
    Private: `tensorflow.python.framework.op_def_registry.get`."""
    from tensorflow.python.framework import op_def_registry

    return op_def_registry.get(op_type)


def gpt2_block_parts(block):
    """`(self_attention, attention_output_dense, feedforward_output_dense)` of one keras-hub `TransformerDecoder`
    block of a GPT-2 backbone: the layers a prefix or an adapter hooks into.
    Private: `TransformerDecoder._self_attention_layer`, `._feedforward_output_dense`, and the attention layer's
    `_output_dense`."""
    attention = block._self_attention_layer
    return attention, attention._output_dense, block._feedforward_output_dense


def wrap_compute_attention(attention, wrap) -> None:
    """Replace one attention layer's score-and-mix step (`softmax(q k^T) v` given query, key, value and mask) by
    `wrap(original)`, on this instance only. A prefix extends the keys and values here, after the projections.
    Private: `keras.layers.MultiHeadAttention._compute_attention` (keras-hub's `CachedMultiHeadAttention` calls it)."""
    object.__setattr__(attention, "_compute_attention", wrap(attention._compute_attention))


def sublayers(layer) -> list:
    """Every layer nested inside `layer` (not `layer` itself), depth first.
    Private: `keras.layers.Layer._flatten_layers`."""
    return list(layer._flatten_layers(include_self=False))


def gpt2_backbone_weights(backbone) -> dict:
    """A keras-hub `GPT2Backbone`'s weights as float32 tensors, by role rather than by keras-hub's variable paths.

    `{"token_embedding": (V, C), "position_embedding": (S, C), "final_norm": (gamma, beta), "layers": [...]}`, each
    layer `{"query", "key", "value": (kernel (C, H, D), bias (H, D)), "attention_output": ((H, D, C), (C,)),
    "attention_norm", "feedforward_norm": (gamma, beta), "feedforward_intermediate", "feedforward_output":
    (kernel, bias)}`. A hand-written decoder reads these instead of calling the layers.
    Private: the variable paths keras-hub gives GPT-2's layers (`transformer_layer_{i}/self_attention/query/kernel`).
    """
    import tensorflow as tf

    weights = {w.path: tf.cast(w.value, tf.float32) for w in backbone.weights}

    def pair(prefix: str, first: str = "kernel", second: str = "bias"):
        return weights[f"{prefix}/{first}"], weights[f"{prefix}/{second}"]

    layers = []
    for i in range(backbone.num_layers):
        block = f"transformer_layer_{i}"
        layers.append({
            **{name: pair(f"{block}/self_attention/{name}") for name in ("query", "key", "value")},
            "attention_output": pair(f"{block}/self_attention/attention_output"),
            "attention_norm": pair(f"{block}/self_attention_layer_norm", "gamma", "beta"),
            "feedforward_norm": pair(f"{block}/feedforward_layer_norm", "gamma", "beta"),
            "feedforward_intermediate": pair(f"{block}/feedforward_intermediate_dense"),
            "feedforward_output": pair(f"{block}/feedforward_output_dense"),
        })
    return {"token_embedding": weights["token_embedding/embeddings"],
            "position_embedding": weights["position_embedding/embeddings"],
            "final_norm": pair("layer_norm", "gamma", "beta"), "layers": layers}


def long_options(parser) -> set[str]:
    """Every `--flag` of an argparse parser and of its subcommands, recursively.
    Private: `ArgumentParser._actions` and `argparse._SubParsersAction` (argparse has no public walk)."""
    import argparse

    found = set()
    for action in parser._actions:
        found.update(s for s in action.option_strings if s.startswith("--"))
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                found |= long_options(sub)
    return found
