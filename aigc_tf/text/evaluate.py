"""Perplexity: how surprised the model is by held-out text, exp(mean negative log-likelihood per token).

A model that guessed uniformly over GPT-2's 50,257 tokens scores 50,257; the lower the better. Evaluated on packed
windows of the run's sequence length, every token but the first of a window predicted from up to that many tokens
of context (the same setting as training).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from aigc_tf.text import data as text_data


def perplexity(causal_lm, corpus: str, sequence_length: int, batch_size: int = 8, max_sequences: int | None = None,
               jit_compile: bool = True, verbose: int = 0) -> dict:
    """`{"perplexity", "loss", "tokens", "sequences", "corpus"}` of `causal_lm` on a corpus."""
    windows = text_data.pack_windows(text_data.corpus_token_ids(corpus, causal_lm.preprocessor.tokenizer),
                                     sequence_length)
    if max_sequences:
        windows = windows[:max_sequences]
    return {"corpus": corpus, **window_perplexity(causal_lm, windows, batch_size, jit_compile, verbose)}


def window_perplexity(causal_lm, windows, batch_size: int = 8, jit_compile: bool = True, verbose: int = 0) -> dict:
    """Perplexity on packed windows (N, sequence_length + 1) of token ids, such as a trainer's validation split
    (`aigc_tf.text.train.corpus_windows`): the same numbers for a model before and after fine-tuning."""
    import keras
    import keras_hub

    scorer = keras_hub.models.GPT2CausalLM(backbone=causal_lm.backbone, preprocessor=None)
    scorer.compile(loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), jit_compile=jit_compile)
    loss = float(scorer.evaluate(text_data.lm_dataset(windows, batch_size, drop_remainder=False), verbose=verbose,
                                 return_dict=True)["loss"])
    return {"perplexity": math.exp(loss), "loss": loss, "tokens": int(windows[:, 1:].size),
            "sequences": int(len(windows)), "sequence_length": int(windows.shape[1] - 1)}


def evaluate_text(run_dir: Path, corpus: str = "moby_dick", max_sequences: int | None = None, verbose: int = 0) -> dict:
    """A text run's perplexity on `corpus` at its training sequence length, also written to
    `<run>/eval_<corpus>.json`."""
    from aigc_tf.text.models import load_text_run

    causal_lm, config = load_text_run(run_dir)
    report = {"run": str(run_dir), **perplexity(causal_lm, corpus, config.sequence_length,
                                                 max_sequences=max_sequences, verbose=verbose)}
    (Path(run_dir) / f"eval_{Path(corpus).stem}.json").write_text(json.dumps(report, indent=2))
    return report
