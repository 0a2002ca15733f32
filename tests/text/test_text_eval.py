"""Held-out text evaluation: BLEU and ROUGE-L of greedy continuations next to perplexity."""

import json
import math

import pytest

from aigc_tf import AigcError
from aigc_tf.cli import main
from aigc_tf.text.evaluate import continuation_scores, evaluate_text, greedy_continuations, overlap_scores

BOOK = ["Call me Ishmael. Some years ago, never mind how long precisely, having little or no money in my purse",
        "and nothing particular to interest me on shore, I thought I would sail about a little and see the watery part"]


def test_identical_texts_score_one_and_disjoint_texts_zero():
    assert overlap_scores(BOOK, BOOK) == pytest.approx({"bleu": 1.0, "rouge_l": 1.0})
    disjoint = ["Whales breathe air through blowholes atop their heads", "Sharks swim silently beneath grey waves"]
    assert overlap_scores(BOOK, disjoint) == pytest.approx({"bleu": 0.0, "rouge_l": 0.0})


def test_partial_overlap_is_between_and_no_words_score_zero():
    half = [" ".join(text.split()[:9]) + " the sea is wide and deep today" for text in BOOK]
    scores = overlap_scores(BOOK, half)
    assert 0.0 < scores["bleu"] < 1.0 and 0.0 < scores["rouge_l"] < 1.0
    assert overlap_scores(BOOK, ["", ""]) == {"bleu": 0.0, "rouge_l": 0.0}  # an empty continuation, not a NaN
    assert overlap_scores(["", ""], ["", ""]) == {"bleu": 0.0, "rouge_l": 0.0}


def test_continuation_scores_on_held_out_windows(tiny_text_model):
    scores = continuation_scores(tiny_text_model, "moby_dick", prompt_tokens=8, continuation_tokens=8,
                                 max_sequences=4, sequence_length=32)
    assert scores["sequences"] == 4 and len(scores["examples"]) == 2
    assert 0.0 <= scores["bleu"] <= 1.0 and 0.0 <= scores["rouge_l"] <= 1.0
    first = scores["examples"][0]
    assert first["prompt"].startswith("CHAPTER 1. Loomings") and first["reference"] and first["generated"]


@pytest.fixture(scope="module")
def oracle(tiny_text_model, monkeypatch_module):
    """Stand-ins for the greedy decoder that know the book: each writes, after the prompt it is given, a function of
    the tokens that really follow that prompt in `windows`. With the true tokens every score must be exactly 1, so
    a prompt paired with another window's reference, or a continuation cut at the wrong offset, shows."""
    import numpy as np

    from aigc_tf.text import data as text_data
    from aigc_tf.text import evaluate

    tokenizer = tiny_text_model.preprocessor.tokenizer
    windows = text_data.pack_windows(text_data.corpus_token_ids("moby_dick", tokenizer), 32)
    writer = {}

    def greedy_continuations(causal_lm, inputs, no_repeat_ngram_size):
        ids, mask = np.array(inputs["token_ids"]), np.array(inputs["padding_mask"])
        prompt_tokens = int(mask[0].sum()) - 1  # after the start token
        for row in ids:
            (match,) = np.flatnonzero((windows[:, :prompt_tokens] == row[1:1 + prompt_tokens]).all(axis=1))[:1]
            row[1 + prompt_tokens:] = writer["write"](windows[match, prompt_tokens:prompt_tokens + len(row) - 1
                                                              - prompt_tokens])
        return {"token_ids": ids, "padding_mask": np.ones_like(mask)}

    monkeypatch_module.setattr(evaluate, "greedy_continuations", greedy_continuations)

    def scores(write):
        writer["write"] = write
        return continuation_scores(tiny_text_model, "moby_dick", prompt_tokens=8, continuation_tokens=16,
                                   max_sequences=6, windows=windows)
    return scores, tokenizer


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as patch:
        yield patch


def test_a_perfect_continuation_scores_one_a_shuffled_one_less_and_a_disjoint_one_zero(oracle):
    import numpy as np

    scores, tokenizer = oracle
    perfect = scores(lambda truth: truth)
    assert (perfect["bleu"], perfect["rouge_l"]) == pytest.approx((1.0, 1.0))
    assert all(e["generated"] == e["reference"] for e in perfect["examples"])
    reversed_words = scores(lambda truth: truth[::-1])  # the same tokens, backwards: measured BLEU 0, ROUGE-L 0.16
    assert reversed_words["bleu"] < 0.5 and 0.0 < reversed_words["rouge_l"] < 0.8
    shifted = scores(lambda truth: np.roll(truth, 4))  # a phrase moved to the front: measured 0.84, 0.76
    assert 0.0 < shifted["bleu"] < 1.0 and shifted["rouge_l"] < 1.0
    quasar = np.asarray(tokenizer(" quasar"))
    disjoint = scores(lambda truth: np.resize(quasar, len(truth)))  # no word of the book
    assert (disjoint["bleu"], disjoint["rouge_l"]) == (0.0, 0.0)


def test_continuation_lengths_are_checked(tiny_text_model):
    with pytest.raises(AigcError, match="exceed the model's context of 64"):
        continuation_scores(tiny_text_model, "moby_dick", prompt_tokens=40, continuation_tokens=40)
    with pytest.raises(AigcError, match="do not fit in an evaluation window of 33 tokens"):
        continuation_scores(tiny_text_model, "moby_dick", 20, 20, sequence_length=32)


def test_eval_json_reports_bleu_and_rouge_next_to_perplexity(tiny_text_run):
    run_dir, config, _ = tiny_text_run
    report = evaluate_text(run_dir, max_sequences=2, continuation_samples=3)
    saved = json.loads((run_dir / "eval_moby_dick.json").read_text())
    assert saved == report
    assert {"perplexity", "loss", "bleu", "rouge_l", "continuation"} <= set(report)
    assert 0.0 <= report["bleu"] <= 1.0 and 0.0 <= report["rouge_l"] <= 1.0 and math.isfinite(report["perplexity"])
    continuation = report["continuation"]
    assert continuation["sequences"] == 3
    assert continuation["prompt_tokens"] == continuation["continuation_tokens"] == config.sequence_length // 4
    assert set(continuation["examples"][0]) == {"prompt", "reference", "generated"}
    assert "bleu" not in evaluate_text(run_dir, max_sequences=2, continuation_samples=0)


def test_continuations_are_decoded_with_the_demos_repetition_ban_unless_told_otherwise(tiny_text_model):
    import numpy as np

    # the module's own import, not `evaluate.greedy_continuations`: the oracle fixture replaces that for the module
    rng = np.random.default_rng(0)
    token_ids = np.concatenate([np.full((4, 1), 50256), rng.integers(0, 50000, (4, 6)), np.zeros((4, 20))],
                               axis=1).astype(np.int32)
    inputs = {"token_ids": token_ids, "padding_mask": np.arange(27)[None, :].repeat(4, 0) <= 6}

    def repeated_bigrams(rows):
        return sum(len(list(zip(r, r[1:]))) - len(set(zip(r, r[1:]))) for r in np.asarray(rows).tolist())

    plain = greedy_continuations(tiny_text_model, inputs, 0)["token_ids"]
    banned = greedy_continuations(tiny_text_model, inputs, 2)["token_ids"]
    assert repeated_bigrams(plain) > 0  # the tiny model loops, so the ban has something to remove
    assert repeated_bigrams(banned) == 0
    np.testing.assert_array_equal(np.asarray(banned)[:, :7], token_ids[:, :7])  # the prompts are kept


def test_cli_eval_flags(tiny_text_run, capsys):
    run = str(tiny_text_run[0])
    assert main(["text", "eval", "--run", run, "--max-sequences", "2", "--bleu-samples", "2",
                 "--prompt-tokens", "6", "--continuation-tokens", "10"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["continuation"]["sequences"] == 2
    assert (report["continuation"]["prompt_tokens"], report["continuation"]["continuation_tokens"]) == (6, 10)
    assert main(["text", "eval", "--run", run, "--max-sequences", "2", "--bleu-samples", "0"]) == 0
    assert "bleu" not in json.loads(capsys.readouterr().out)
