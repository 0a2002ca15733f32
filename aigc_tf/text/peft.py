"""Parameter-efficient fine-tuning of GPT-2 beside LoRA: prefix tuning and bottleneck adapters.

Fine-tuning every weight of a pretrained model costs a full copy per task. The methods here freeze the model and
train a few new parameters instead; what changes is where those parameters sit:

- **LoRA** (Hu et al. 2021, keras-hub's `enable_lora`): a low-rank update B A added to the query and value kernels.
  It can be merged into the kernels afterwards, so a LoRA model runs at the base model's speed.
- **Prefix tuning** (Li & Liang 2021, "Prefix-Tuning: Optimizing Continuous Prompts for Generation"): `length`
  learned key and value vectors per layer and head, which every token attends to as if a prompt of `length` virtual
  tokens came first. Nothing inside the model changes; the "prompt" is learned instead of written. It is the deep
  form of prompt tuning (Lester et al. 2021 learn virtual token embeddings at the input only). The prefix starts as
  the keys and values of a real text (`INIT_TEXT`), which Li & Liang found trains better than random vectors.
- **Bottleneck adapters** (Houlsby et al. 2019, "Parameter-Efficient Transfer Learning for NLP"): a small MLP
  h + W_up gelu(W_down h) after the attention output projection and after the feed-forward output of every layer,
  W_up zero at the start so the adapted model begins exactly as the base model.

keras-hub's GPT-2 layers have no hooks for either (LoRA itself is built into Keras' Dense layers), so `attach`
wraps two methods of each layer's instances (private keras-hub attributes, pinned by setup.cfg's keras-hub version;
tests/text/test_text_peft.py fails if they change): the attention's `_compute_attention`, to put the prefix in front of
the keys and values, and the output projections' `call`, to run the adapter after them. The new layers live in a
`PEFT` object beside the backbone rather than inside it, so that the backbone's own weights, its keras-hub preset
and LoRA's layer indexing stay those of a plain GPT-2: a run saves them as `<run>/preset/` plus `peft_weights.npz`.
`aigc_tf.text.kv_decoder` reads the same weights (`decoder_weights`), so greedy decoding and the TF Serving export
run a prefix- or adapter-tuned model too.
"""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np

from aigc_tf import AigcError
from aigc_tf.compat import gpt2_block_parts, sublayers, wrap_compute_attention

METHODS = ("full", "lora", "prefix", "adapter")
WEIGHTS_FILE = "peft_weights.npz"  # a prefix or adapter run's trained parameters, beside its preset
LORA_FILE = "adapter.lora.h5"  # a LoRA run's adapter alone (keras-hub's save_lora_weights)
INIT_TEXT = ("It was the best of times, it was the worst of times, it was the age of wisdom, it was the age of "
             "foolishness, it was the epoch of belief, it was the epoch of incredulity")


class Prefix(keras.layers.Layer):
    """One layer's learned prefix: keys and values (length, heads, head_dim) that every query attends to."""

    def __init__(self, length: int, num_heads: int, head_dim: int, **kwargs):
        super().__init__(**kwargs)
        shape = (length, num_heads, head_dim)
        self.keys = self.add_weight(shape=shape, initializer="zeros", name="keys")
        self.values = self.add_weight(shape=shape, initializer="zeros", name="values")

    def extend(self, key, value, attention_mask):
        """key, value (B, S, H, D) -> (B, P + S, H, D); attention_mask (B, T, S) -> (B, T, P + S), prefix visible."""
        batch, length = keras.ops.shape(key)[0], self.keys.shape[0]

        def tile(prefix):
            return keras.ops.broadcast_to(keras.ops.cast(prefix, key.dtype)[None], (batch, *prefix.shape))

        key = keras.ops.concatenate([tile(self.keys), key], axis=1)
        value = keras.ops.concatenate([tile(self.values), value], axis=1)
        if attention_mask is not None:
            queries = keras.ops.shape(attention_mask)[1]
            visible = keras.ops.ones((batch, queries, length), dtype=attention_mask.dtype)
            attention_mask = keras.ops.concatenate([visible, attention_mask], axis=-1)
        return key, value, attention_mask


class BottleneckAdapter(keras.layers.Layer):
    """h + W_up gelu(W_down h + b_down) + b_up, with W_up and b_up zero at the start (the identity)."""

    def __init__(self, hidden_dim: int, bottleneck: int, **kwargs):
        super().__init__(**kwargs)
        self.down = keras.layers.Dense(bottleneck, kernel_initializer=keras.initializers.RandomNormal(stddev=0.02),
                                       name=f"{self.name}_down", dtype=self.dtype_policy)
        self.up = keras.layers.Dense(hidden_dim, kernel_initializer="zeros", name=f"{self.name}_up",
                                     dtype=self.dtype_policy)
        self.down.build((None, hidden_dim))
        self.up.build((None, bottleneck))

    def call(self, h):
        return h + self.up(keras.activations.gelu(self.down(h), approximate=True))


class PEFT(keras.layers.Layer):
    """The prefix or adapter parameters of one GPT-2 backbone, and the wrapping that makes the backbone use them.

    A `keras.layers.Layer`, so that a model it is assigned to (the trainer in `aigc_tf.text.train`) tracks, trains
    and backs up its weights.
    """

    def __init__(self, method: str, size: int, num_layers: int, num_heads: int, hidden_dim: int, **kwargs):
        super().__init__(**kwargs)
        if method not in ("prefix", "adapter"):
            raise AigcError(f"PEFT wraps prefix or adapter tuning, not {method!r}")
        if size < 1:
            raise AigcError(f"the {method} size must be >= 1, got {size}")
        self.method, self.size = method, size
        if method == "prefix":
            self.prefixes = [Prefix(size, num_heads, hidden_dim // num_heads, name=f"prefix_{i}",
                                    dtype=self.dtype_policy) for i in range(num_layers)]
        else:  # one adapter after the attention, one after the feed-forward block, per layer
            self.adapters = [[BottleneckAdapter(hidden_dim, size, name=f"adapter_{i}_{part}", dtype=self.dtype_policy)
                              for part in ("attention", "feedforward")] for i in range(num_layers)]

    def wrap(self, backbone) -> None:
        """Make `backbone`'s layers use these parameters (an instance's methods are wrapped; the class is not)."""
        for i, layer in enumerate(backbone.transformer_layers):
            attention, attention_output, feedforward_output = gpt2_block_parts(layer)
            if self.method == "prefix":
                _wrap_attention(attention, self.prefixes[i])
            else:
                _wrap_output(attention_output, self.adapters[i][0])
                _wrap_output(feedforward_output, self.adapters[i][1])
        object.__setattr__(backbone, "peft", self)  # untracked: the backbone's weights stay a plain GPT-2's


def _wrap_attention(attention, prefix: Prefix) -> None:
    def wrap(compute):
        def with_prefix(query, key, value, attention_mask=None, **kwargs):
            key, value, attention_mask = prefix.extend(key, value, attention_mask)
            return compute(query, key, value, attention_mask=attention_mask, **kwargs)

        return with_prefix

    wrap_compute_attention(attention, wrap)


def _wrap_output(dense, adapter: BottleneckAdapter) -> None:
    call = dense.call

    def with_adapter(inputs, *args, **kwargs):
        return adapter(call(inputs, *args, **kwargs))

    object.__setattr__(dense, "call", with_adapter)


def enable_lora(backbone, rank: int) -> None:
    """keras-hub's `enable_lora`, with the query and value biases frozen too: it leaves them trainable, and
    `save_lora_weights` does not save them, so the adapter file alone would not give back the trained model. LoRA
    trains A and B only (Hu et al. 2021; Hugging Face PEFT's default `bias="none"`)."""
    backbone.enable_lora(rank=rank)
    for layer in sublayers(backbone):
        if getattr(layer, "lora_enabled", False) and getattr(layer, "bias", None) is not None:
            layer.bias.trainable = False


def size_of(config) -> int:
    """The size of a config's prefix (vectors per layer) or adapters (bottleneck width)."""
    return config.prefix_length if method_of(config) == "prefix" else config.adapter_size


def method_of(config) -> str:
    """The fine-tuning method a text config asks for; `lora_rank` alone still means LoRA."""
    if config.peft not in METHODS:
        raise AigcError(f"unknown `peft` {config.peft!r}; choose one of {', '.join(METHODS)}")
    return config.method


def attach(causal_lm, method: str, size: int, initialize: bool = True) -> PEFT:
    """Freeze `causal_lm`'s backbone and give it fresh prefix or adapter parameters; returns them.

    `initialize`: start the prefix from the keys and values of `INIT_TEXT` (a new run); off when trained weights
    are loaded next.
    """
    backbone = causal_lm.backbone
    if getattr(backbone, "peft", None) is not None:
        raise AigcError("this backbone already has prefix or adapter parameters")
    peft = PEFT(method, size, backbone.num_layers, backbone.num_heads, backbone.hidden_dim, name=f"peft_{method}",
                dtype=backbone.dtype_policy)  # fp16 / bf16 compute like the layers it joins, float32 variables
    backbone.trainable = False
    if method == "prefix" and initialize:
        _initialize_prefix(causal_lm, peft)
    peft.wrap(backbone)
    return peft


def _initialize_prefix(causal_lm, peft: PEFT) -> None:
    """Set each layer's prefix to the keys and values the frozen model computes for the first tokens of INIT_TEXT."""
    import tensorflow as tf

    length = peft.size
    ids = causal_lm.preprocessor.tokenizer(INIT_TEXT)
    ids = tf.tile(ids, [-(-length // int(tf.shape(ids)[0]))])[None, :length]  # repeat a short text to `length`
    backbone = causal_lm.backbone
    shape = [1, backbone.num_layers, 2, length, backbone.num_heads, backbone.hidden_dim // backbone.num_heads]
    _, _, cache = causal_lm.call_with_cache(ids, tf.zeros(shape, causal_lm.compute_dtype), 0)
    for i, prefix in enumerate(peft.prefixes):  # cache (1, L, 2, P, H, D)
        prefix.keys.assign(tf.cast(cache[0, i, 0], prefix.keys.dtype))
        prefix.values.assign(tf.cast(cache[0, i, 1], prefix.values.dtype))


def save(peft: PEFT, run_dir: Path) -> Path:
    """The parameters in creation order (`load` rebuilds the same layers, then sets them in that order)."""
    path = Path(run_dir) / WEIGHTS_FILE
    np.savez(path, *peft.get_weights())
    return path


def load(causal_lm, method: str, size: int, run_dir: Path) -> PEFT:
    """Attach a saved run's prefix or adapters to `causal_lm` (its base model, loaded from the run's preset)."""
    path = Path(run_dir) / WEIGHTS_FILE
    if not path.exists():
        raise AigcError(f"{run_dir} was trained with --peft {method} but has no {WEIGHTS_FILE}; train it again")
    peft = attach(causal_lm, method, size, initialize=False)
    with np.load(path) as saved:
        values = [saved[f"arr_{i}"] for i in range(len(saved.files))]
    shapes = [tuple(w.shape) for w in peft.weights]
    if [v.shape for v in values] != shapes:
        raise AigcError(f"{path} does not fit a {method} of size {size} on this model; was the run's config edited?")
    peft.set_weights(values)
    return peft


def copy(source_backbone, target_causal_lm) -> None:
    """Give `target_causal_lm` (a copy of the source's base model, e.g. in bf16) the source's prefix or adapters."""
    peft = getattr(source_backbone, "peft", None)
    if peft is None:
        return
    target = attach(target_causal_lm, peft.method, peft.size, initialize=False)
    target.set_weights(peft.get_weights())


def decoder_weights(backbone) -> list[dict] | None:
    """Per layer, the float32 arrays the KV-cache decoder needs: `prefix_keys` / `prefix_values` (H, P, D), or
    `adapters`: [(down kernel, down bias, up kernel, up bias)] after the attention and after the feed-forward."""
    peft = getattr(backbone, "peft", None)
    if peft is None:
        return None

    def f32(variable):
        return np.asarray(keras.ops.convert_to_numpy(variable), np.float32)

    if peft.method == "prefix":
        return [{"prefix_keys": f32(p.keys).transpose(1, 0, 2), "prefix_values": f32(p.values).transpose(1, 0, 2)}
                for p in peft.prefixes]
    return [{"adapters": [tuple(f32(w) for w in (a.down.kernel, a.down.bias, a.up.kernel, a.up.bias))
                          for a in pair]} for pair in peft.adapters]


def parameter_count(peft: PEFT | None) -> int:
    return 0 if peft is None else int(sum(np.prod(w.shape) for w in peft.weights))
