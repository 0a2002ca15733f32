"""GPT-2 training tokens/s: a bare `fit` against the project's trainer, fp32 and bf16, at equal steps.

The small GPT-2 that `aigc-tf text train` trains (2 layers, hidden 256, batch 8 x 128 tokens), XLA on:
- `bare_fit`: `compile(AdamW, sparse cross-entropy)` + `fit` on in-memory arrays, nothing else;
- `aigc_tf`: the project's `compile_for_training` (AdamW with warm-up/cosine schedule, clipnorm, perplexity metric)
  + `fit` on its tf.data pipeline of packed windows (`aigc_tf.text.data.lm_dataset`);
- `aigc_tf_bf16`: the same under `mixed_bfloat16`.
All three start from the same weights and see the same windows in the same order, so their final losses compare at
equal steps. MFU = tokens/s x (6 x matmul parameters + 12 x layers x sequence x hidden) / the fp32 GEMM FLOP/s.
"""

from __future__ import annotations

import contextlib

import keras
import numpy as np

from aigc_tf.config import TextConfig
from aigc_tf.text import data as text_data
from machine import alternate, median, seconds


@contextlib.contextmanager
def dtype_policy(name: str):
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(name)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def flops_per_token(backbone, config: TextConfig) -> float:
    """6N for the matmul parameters (the tied embedding counts once, as the LM head) + attention's 12 L T C."""
    position = int(np.prod(backbone.position_embedding.weights[0].shape))
    params = int(sum(np.prod(w.shape) for w in backbone.weights)) - position
    return 6.0 * params + 12.0 * config.num_layers * config.sequence_length * config.hidden_dim


def measure(peak_gflops: float, *, steps: int = 10, repeats: int = 5, config: TextConfig | None = None) -> dict:
    import keras_hub

    from aigc_tf.text.models import build_causal_lm
    from aigc_tf.text.train import compile_for_training

    config = config or TextConfig(preset=None, corpus="sotu")
    keras.utils.set_random_seed(0)
    template = build_causal_lm(config).backbone
    windows = np.random.default_rng(0).integers(0, 50257, (config.batch_size * steps, config.sequence_length + 1))
    windows = windows.astype(np.int32)
    x = {"token_ids": windows[:, :-1], "padding_mask": np.ones_like(windows[:, :-1], bool)}
    y = windows[:, 1:]
    models, fits, first_call = {}, {}, {}
    for name, policy in (("bare_fit", "float32"), ("aigc_tf", "float32"), ("aigc_tf_bf16", "mixed_bfloat16")):
        with dtype_policy(policy):
            model = keras_hub.models.GPT2CausalLM(backbone=build_causal_lm(config).backbone, preprocessor=None)
        model.backbone.set_weights(template.get_weights())
        if name == "bare_fit":
            model.compile(optimizer=keras.optimizers.AdamW(config.peak_learning_rate),
                          loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), jit_compile=True)
            fit = (lambda model=model: model.fit(x, y, batch_size=config.batch_size, epochs=1, shuffle=False,
                                                 verbose=0))
        else:
            compile_for_training(model, config.replace(jit_compile=True), 1000)
            dataset = text_data.lm_dataset(windows, config.batch_size)
            fit = (lambda model=model, dataset=dataset: model.fit(dataset, epochs=1, verbose=0))
        first_call[name] = seconds(lambda fit=fit: fit().history["loss"][-1])
        models[name], fits[name] = model, fit
    tokens = steps * config.batch_size * config.sequence_length
    losses = {}

    def timed(name):
        def run():
            history = {}
            elapsed = seconds(lambda: history.update(fits[name]().history))
            losses[name] = float(history["loss"][-1])
            return tokens / elapsed
        return run

    rates = alternate({name: timed(name) for name in fits}, repeats)
    tokens_per_s = {k: median(v) for k, v in rates.items()}
    per_token = flops_per_token(template, config)
    return {
        "model": {"num_layers": config.num_layers, "hidden_dim": config.hidden_dim, "batch_size": config.batch_size,
                  "sequence_length": config.sequence_length, "steps_per_repeat": steps},
        "tokens_per_s": tokens_per_s, "tokens_per_s_repeats": rates, "first_call_s": first_call,
        "flops_per_token": per_token,
        "mfu": tokens_per_s["aigc_tf"] * per_token / (peak_gflops * 1e9),
        "mfu_by_variant": {k: v * per_token / (peak_gflops * 1e9) for k, v in tokens_per_s.items()},
        "loss_after_equal_steps": losses, "equal_steps": steps * (repeats + 1),
    }
