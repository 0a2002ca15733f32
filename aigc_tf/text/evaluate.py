"""Held-out text, two ways: perplexity (how surprised the model is) and continuation overlap (BLEU, ROUGE-L).

Perplexity is exp(mean negative log-likelihood per token). A model that guessed uniformly over GPT-2's 50,257 tokens
scores 50,257; the lower the better. Evaluated on packed windows of the run's sequence length, every token but the
first of a window predicted from up to that many tokens of context (the same setting as training).

Continuation overlap (`continuation_scores`) asks the model to write: prompted with the start of a held-out window,
it continues greedily, and its words are compared with what the book really says next, with keras-hub's metrics:
- BLEU (Papineni et al. 2002, SacreBLEU's tokenization): corpus-level geometric mean of the 1- to 4-gram precisions
  times a brevity penalty;
- ROUGE-L (Lin 2004): F1 of the longest common subsequence of words, per continuation, averaged.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from aigc_tf import AigcError
from aigc_tf.text import data as text_data

# Windows `evaluate_text` continues by default (all of Moby-Dick's held-out tenth). Corpus BLEU-4 is 0 unless some
# 4-gram matches somewhere, and 16 continuations (about 400 words) gave it too few to count; thousands of words
# cost one batched decode of a few seconds.
CONTINUATION_SAMPLES = 256
# The repetition control continuations are decoded with by default: the one `make demo` and every text lesson use
# with greedy decoding, so the scores describe the text a learner sees; plain greedy decoding of a small model loops
# ("and the Pequod, and the Pequod"). 0 scores plain greedy decoding.
CONTINUATION_NO_REPEAT_NGRAM = 3


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


def continuation_scores(causal_lm, corpus: str, prompt_tokens: int = 32, continuation_tokens: int = 32,
                        max_sequences: int = CONTINUATION_SAMPLES, sequence_length: int | None = None,
                        examples: int = 2, windows: np.ndarray | None = None,
                        no_repeat_ngram_size: int = CONTINUATION_NO_REPEAT_NGRAM) -> dict:
    """BLEU-4 and ROUGE-L F1 of greedy continuations of held-out text against what the text really says next.

    From `max_sequences` windows spread evenly over the corpus (packed as `perplexity` packs them, windows of
    `sequence_length` + 1 tokens; default `prompt_tokens + continuation_tokens`), the model reads the first
    `prompt_tokens` tokens (after the start token, as `generate` puts it) and continues for `continuation_tokens`
    tokens with greedy decoding, banning repeated n-grams of `no_repeat_ngram_size` (`aigc_tf.text.repetition`, in
    keras-hub's greedy loop; 0: plain greedy, the KV-cache decoder); the continuation is compared with the window's
    next `continuation_tokens` tokens, both cut at an `<|endoftext|>`.

    What the numbers mean: both are in [0, 1] and measure word overlap with the one continuation the book happens to
    have, not quality. Many good continuations share few words with it, so BLEU against a single reference stays low
    even for a good model: its 4-gram precision needs whole phrases to match, and a small model's ROUGE-L comes
    mostly from frequent words ("of", "the") in the right order. Compare runs on the same corpus and settings, and
    read the examples.

    Returns `{"bleu", "rouge_l", "sequences", "prompt_tokens", "continuation_tokens", "decoding", "examples"}`, the
    examples the first `examples` (prompt, reference, generated) texts.
    """
    tokenizer = causal_lm.preprocessor.tokenizer
    context = causal_lm.backbone.max_sequence_length
    if prompt_tokens < 1 or continuation_tokens < 1 or max_sequences < 1:
        raise AigcError(f"`prompt_tokens` ({prompt_tokens}), `continuation_tokens` ({continuation_tokens}) and the "
                        f"number of sequences ({max_sequences}) must each be >= 1")
    sequence_length = sequence_length or prompt_tokens + continuation_tokens
    if prompt_tokens + continuation_tokens > sequence_length + 1:
        raise AigcError(f"`prompt_tokens` + `continuation_tokens` ({prompt_tokens + continuation_tokens}) do not fit "
                        f"in an evaluation window of {sequence_length + 1} tokens")
    total = 1 + prompt_tokens + continuation_tokens  # the start token, the prompt, the continuation
    if total > context:
        raise AigcError(f"the start token + `prompt_tokens` + `continuation_tokens` ({total}) exceed the model's "
                        f"context of {context} tokens")
    if windows is None:
        windows = text_data.pack_windows(text_data.corpus_token_ids(corpus, tokenizer), sequence_length)
    elif windows.shape[1] < prompt_tokens + continuation_tokens:
        raise AigcError(f"evaluation windows of {windows.shape[1]} tokens cannot hold `prompt_tokens` + "
                        f"`continuation_tokens` ({prompt_tokens + continuation_tokens})")
    rows = np.unique(np.linspace(0, len(windows) - 1, min(max_sequences, len(windows))).round().astype(int))
    prompts = windows[rows, :prompt_tokens]  # (N, K)
    references = windows[rows, prompt_tokens:prompt_tokens + continuation_tokens]  # (N, M)

    n = len(rows)
    token_ids = np.concatenate([np.full((n, 1), tokenizer.start_token_id), prompts,
                                np.zeros((n, continuation_tokens), np.int32)], axis=1).astype(np.int32)  # (N, T)
    padding_mask = np.arange(total)[None, :].repeat(n, 0) <= prompt_tokens  # (N, T): the start token and prompt
    outputs = greedy_continuations(causal_lm, {"token_ids": token_ids, "padding_mask": padding_mask},
                                    no_repeat_ngram_size)
    generated = np.asarray(outputs["token_ids"])[:, 1 + prompt_tokens:]  # (N, M)
    kept = np.asarray(outputs["padding_mask"])[:, 1 + prompt_tokens:]  # off after the model's end token

    end = tokenizer.end_token_id
    prompt_texts = [_detokenize(tokenizer, [t for t in row if t != end]) for row in prompts]
    reference_texts = [_detokenize(tokenizer, _until(row, end)) for row in references]
    generated_texts = [_detokenize(tokenizer, _until(row[keep], end)) for row, keep in zip(generated, kept)]
    decoding = f"greedy, no-repeat-ngram {no_repeat_ngram_size}" if no_repeat_ngram_size else "greedy"
    return {**overlap_scores(reference_texts, generated_texts), "sequences": n, "prompt_tokens": prompt_tokens,
            "continuation_tokens": continuation_tokens, "decoding": decoding,
            "examples": [{"prompt": p, "reference": r, "generated": g}
                         for p, r, g in list(zip(prompt_texts, reference_texts, generated_texts))[:examples]]}


def greedy_continuations(causal_lm, inputs: dict, no_repeat_ngram_size: int) -> dict:
    """{token_ids, padding_mask} of one batch decoded greedily, the mask off after each row's end token. One batch
    decoded once: no XLA, whose compile would cost more than the one decoding it speeds up."""
    import keras_hub

    from aigc_tf.text.repetition import with_repetition_control
    from aigc_tf.text.sample import greedy_token_ids

    if not no_repeat_ngram_size:
        return greedy_token_ids(causal_lm, inputs, jit_compile=False)
    decoder = keras_hub.models.GPT2CausalLM(backbone=causal_lm.backbone, preprocessor=None)  # same weights
    decoder.compile(sampler=with_repetition_control(keras_hub.samplers.GreedySampler(),
                                                    no_repeat_ngram_size=no_repeat_ngram_size), jit_compile=False)
    return decoder.generate(inputs, stop_token_ids=[causal_lm.preprocessor.tokenizer.end_token_id])


def overlap_scores(references: list[str], generated: list[str]) -> dict:
    """`{"bleu", "rouge_l"}` of `generated[i]` against its one reference `references[i]`, both in [0, 1].

    BLEU: keras-hub's corpus BLEU-4 (`keras_hub.metrics.Bleu`, SacreBLEU's 13a tokenization, no smoothing),
    BP * exp(mean over n = 1..4 of log p_n), p_n the clipped n-gram precision over all texts and BP = min(1,
    exp(1 - reference words / generated words)); 0 when an n-gram order has no match, or there are no words.
    ROUGE-L: `keras_hub.metrics.RougeL` (Google's `rouge-score` package), the F1 of precision LCS / generated words
    and recall LCS / reference words, averaged over the texts.
    """
    import keras_hub

    bleu = keras_hub.metrics.Bleu(max_order=4)
    with np.errstate(divide="ignore", invalid="ignore"):  # no words on one side: Bleu divides by the word counts
        bleu.update_state([[r] for r in references], generated)
    bleu_value = float(bleu.result())
    try:
        rouge = keras_hub.metrics.RougeL()
    except ImportError:
        raise AigcError("ROUGE-L needs the rouge-score package: pip install rouge-score") from None
    rouge.update_state(references, generated)
    return {"bleu": bleu_value if math.isfinite(bleu_value) else 0.0, "rouge_l": float(rouge.result()["f1_score"])}


def _until(ids, stop: int) -> list[int]:
    ids = [int(t) for t in ids]
    return ids[: ids.index(stop)] if stop in ids else ids


def _detokenize(tokenizer, ids: list[int]) -> str:
    if not len(ids):
        return ""
    text = tokenizer.detokenize([list(map(int, ids))])[0]
    return text.decode("utf-8", "replace") if isinstance(text, bytes) else str(text)


def evaluate_text(run_dir: Path | None, corpus: str = "moby_dick", max_sequences: int | None = None,
                  verbose: int = 0, continuation_samples: int = CONTINUATION_SAMPLES, prompt_tokens: int | None = None,
                  continuation_tokens: int | None = None, preset: str | None = None,
                  out: Path | None = None, no_repeat_ngram_size: int = CONTINUATION_NO_REPEAT_NGRAM) -> dict:
    """A text run's perplexity on `corpus` at its training sequence length and, unless `continuation_samples` is 0,
    the BLEU and ROUGE-L of its greedy continuations (`continuation_scores`); also written to
    `<run>/eval_<corpus>.json`.

    `prompt_tokens` and `continuation_tokens` default to 32 each, or a quarter of the training window each for runs
    trained on windows shorter than 128 tokens.

    On the corpus the run was trained on, only its held-out split is scored (`split: "validation"`, the windows
    `fit` never trained on); on any other corpus, all of it (`split: "all"`).

    `preset` instead of `run_dir` scores a model before fine-tuning (the shipped base, say) on exactly the windows a
    default fine-tuning run on `corpus` holds out, so "before" and "after" compare; the report goes to `out`.
    """
    from aigc_tf.config import TextConfig
    from aigc_tf.text.models import load_preset, load_text_run

    if preset:
        config = TextConfig(preset=preset, corpus=corpus)
        causal_lm = load_preset(preset, config.sequence_length, dtype="float32")
    else:
        causal_lm, config = load_text_run(run_dir)
    tokenizer = causal_lm.preprocessor.tokenizer
    if corpus == config.corpus:
        from aigc_tf.text.train import corpus_windows

        split, (_, windows) = "validation", corpus_windows(config, tokenizer)
    else:
        split, windows = "all", text_data.pack_windows(text_data.corpus_token_ids(corpus, tokenizer),
                                                       config.sequence_length)
    scored = windows[:max_sequences] if max_sequences else windows  # continuations still spread over all of them
    report = {"run" if run_dir else "preset": str(run_dir or preset), "corpus": corpus, "split": split,
              **window_perplexity(causal_lm, scored, verbose=verbose)}
    if continuation_samples:
        default = max(1, min(32, config.sequence_length // 4))
        scores = continuation_scores(causal_lm, corpus, prompt_tokens or default, continuation_tokens or default,
                                     continuation_samples, sequence_length=config.sequence_length, windows=windows,
                                     no_repeat_ngram_size=no_repeat_ngram_size)
        report.update(bleu=scores.pop("bleu"), rouge_l=scores.pop("rouge_l"), continuation=scores)
    out = Path(out or Path(run_dir) / f"eval_{Path(corpus).stem}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    return report
