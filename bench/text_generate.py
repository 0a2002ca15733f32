"""GPT-2 speed: batch-1 greedy decoding with and without XLA, and training tokens/s, alternated in one run.

    python bench/text_generate.py [--repeats 5] [--quick]

Decoding: the default small GPT-2 of `aigc-tf text train` (random weights: speed does not depend on them), a
16-token prompt, 64 new greedy tokens (no early stop), keras-hub's `generate` compiled with `jit_compile=False` (what
keras-hub's "auto" picks on CPU) and `True` (aigc_tf's default). Training: `fit` on packed windows, batch 8 x 128
tokens, with and without XLA. Median of `--repeats`, first call (trace/compile) reported apart, next to a same-run
fp32 GEMM reference. Never a timed test.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import keras_hub  # noqa: E402
import numpy as np  # noqa: E402

from aigc_tf.config import TextConfig  # noqa: E402
from aigc_tf.data import text as text_data  # noqa: E402
from aigc_tf.text.model import build_causal_lm  # noqa: E402
from aigc_tf.text.train import compile_for_training  # noqa: E402
from machine import gemm_gflops, machine  # noqa: E402  (bench/machine.py)

PROMPT = "It is a beautiful day in the neighbourhood, said the President of the United States to"  # 16+ tokens
NEW_TOKENS = 64


def decode_rate(causal_lm, prompt: str, prompt_len: int) -> float:
    began = time.perf_counter()
    causal_lm.generate(prompt, max_length=prompt_len + NEW_TOKENS, stop_token_ids=None)
    return NEW_TOKENS / (time.perf_counter() - began)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--train-steps", type=int, default=10, help="fit steps per timed repeat")
    parser.add_argument("--quick", action="store_true", help="smoke run: 2 repeats, 3 train steps")
    args = parser.parse_args()
    if args.quick:
        args.repeats, args.train_steps = 2, 3

    config = TextConfig()
    print(f"machine: {machine()}")
    print(f"fp32 GEMM [1024,256]x[256,50257]: {gemm_gflops():.1f} GFLOP/s (same run)")
    keras.utils.set_random_seed(0)
    causal_lm = build_causal_lm(config)
    tokenizer = causal_lm.preprocessor.tokenizer
    ids = list(tokenizer(PROMPT))[:15]  # + the start token = 16 prompt tokens
    prompt = tokenizer.detokenize([[int(i) for i in ids]])[0]
    prompt_len = len(ids) + 1
    print(f"model: {config.num_layers} layers, hidden {config.hidden_dim}, "
          f"{sum(int(np.prod(w.shape)) for w in causal_lm.backbone.weights):,} parameters")

    decoders = {}
    for name, jit in (("no_xla", False), ("xla", True)):
        lm = build_causal_lm(config)
        lm.backbone.set_weights(causal_lm.backbone.get_weights())
        lm.compile(sampler="greedy", jit_compile=jit)
        began = time.perf_counter()
        lm.generate(prompt, max_length=prompt_len + NEW_TOKENS, stop_token_ids=None)
        decoders[name] = {"lm": lm, "first_call_s": time.perf_counter() - began, "rates": []}

    windows = np.random.default_rng(0).integers(0, 50257, (64, config.sequence_length + 1)).astype(np.int32)
    dataset = text_data.lm_dataset(windows, config.batch_size).repeat()
    trainers = {}
    for name, jit in (("fit_no_xla", False), ("fit_xla", True)):
        trainer = keras_hub.models.GPT2CausalLM(backbone=build_causal_lm(config).backbone, preprocessor=None)
        compile_for_training(trainer, config.replace(jit_compile=jit), 1000)
        began = time.perf_counter()
        trainer.fit(dataset, steps_per_epoch=2, epochs=1, verbose=0, shuffle=False)
        trainers[name] = {"model": trainer, "first_call_s": time.perf_counter() - began, "rates": []}

    tokens_per_step = config.batch_size * config.sequence_length
    for _ in range(args.repeats):  # ABAB
        for v in decoders.values():
            v["rates"].append(decode_rate(v["lm"], prompt, prompt_len))
        for v in trainers.values():
            began = time.perf_counter()
            v["model"].fit(dataset, steps_per_epoch=args.train_steps, epochs=1, verbose=0, shuffle=False)
            v["rates"].append(args.train_steps * tokens_per_step / (time.perf_counter() - began))

    print(f"\ndecoding, batch 1, {prompt_len}-token prompt, {NEW_TOKENS} new greedy tokens (keras-hub generate)")
    base = statistics.median(decoders["no_xla"]["rates"])
    for name, v in decoders.items():
        rate = statistics.median(v["rates"])
        print(f"  {name:<10} {rate:8.1f} new tokens/s   x no_xla {rate / base:5.2f}   first call {v['first_call_s']:.2f} s")
    print(f"\ntraining, batch {config.batch_size} x {config.sequence_length} tokens (fit on packed windows)")
    base = statistics.median(trainers["fit_no_xla"]["rates"])
    for name, v in trainers.items():
        rate = statistics.median(v["rates"])
        print(f"  {name:<10} {rate:8.0f} tokens/s       x no_xla {rate / base:5.2f}   first call {v['first_call_s']:.2f} s")


if __name__ == "__main__":
    main()
