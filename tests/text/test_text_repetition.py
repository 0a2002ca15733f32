"""Repetition penalty and no-repeat-n-gram: the logit edits, and what they do inside keras-hub's sampling loop."""

import numpy as np
import pytest
import tensorflow as tf

from aigc_tf import AigcError
from aigc_tf.text.repetition import BANNED, ban_repeated_ngrams, penalize_repeats, with_repetition_control
from aigc_tf.text.sample import generate, make_sampler


def test_penalty_divides_positive_and_multiplies_negative_logits_of_seen_tokens_only():
    ids = tf.constant([[1, 2, 0, 0], [3, 3, 3, 0]])
    logits = tf.constant([[2.0, 2.0, -2.0, 2.0], [2.0, 2.0, 2.0, -2.0]])
    out = penalize_repeats(logits, ids, tf.constant(2), 2.0).numpy()  # only positions 0, 1 are text so far
    np.testing.assert_allclose(out, [[2.0, 1.0, -4.0, 2.0], [2.0, 2.0, 2.0, -4.0]])


def test_ngram_ban_removes_exactly_the_tokens_that_would_repeat_an_ngram():
    ids = tf.constant([[5, 6, 7, 5, 6, 0, 0], [5, 6, 7, 5, 8, 0, 0]])
    out = ban_repeated_ngrams(tf.zeros([2, 10]), ids, tf.constant(5), 3).numpy()
    assert [list(np.flatnonzero(row == BANNED)) for row in out] == [[7], []]  # "5 6" was followed by 7 before
    bigrams = ban_repeated_ngrams(tf.zeros([2, 10]), ids, tf.constant(5), 2).numpy()
    assert list(np.flatnonzero(bigrams[0] == BANNED)) == [7]  # after 6: 7 followed 6 before
    assert list(np.flatnonzero(bigrams[1] == BANNED)) == []  # 8 never came before


def test_controls_off_return_the_sampler_itself_and_bad_values_are_errors():
    sampler = make_sampler("greedy")
    assert with_repetition_control(sampler) is sampler
    with pytest.raises(AigcError, match="repetition_penalty"):
        with_repetition_control(sampler, repetition_penalty=0.5)
    with pytest.raises(AigcError, match="no_repeat_ngram_size"):
        with_repetition_control(sampler, no_repeat_ngram_size=-1)


def _ngrams(ids, n):
    return [tuple(ids[i:i + n]) for i in range(len(ids) - n + 1)]


@pytest.mark.parametrize("sampler", ["greedy", "top_p"])
def test_no_repeat_ngram_leaves_no_repeated_bigram_in_generated_text(tiny_text_model, sampler):
    tokenizer = tiny_text_model.preprocessor.tokenizer
    kwargs = dict(max_length=40, seed=1) if sampler == "top_p" else dict(max_length=40)
    plain = generate(tiny_text_model, ["the"], sampler, **kwargs)[0][0]
    controlled = generate(tiny_text_model, ["the"], sampler, no_repeat_ngram_size=2, **kwargs)[0][0]
    plain_ids = [int(t) for t in tokenizer(plain)]
    ids = [int(t) for t in tokenizer(controlled)]
    if sampler == "greedy":  # the tiny model loops under greedy decoding (sampled, its text is too random to)
        assert len(set(_ngrams(plain_ids, 2))) < len(_ngrams(plain_ids, 2))
        assert controlled != plain
    assert len(set(_ngrams(ids, 2))) == len(_ngrams(ids, 2))


def test_penalty_changes_greedy_text_and_off_matches_the_kv_cache_decoder(tiny_text_model):
    plain = generate(tiny_text_model, ["the"], "greedy", max_length=30)
    assert plain == generate(tiny_text_model, ["the"], "greedy", max_length=30, repetition_penalty=1.0)
    assert plain != generate(tiny_text_model, ["the"], "greedy", max_length=30, repetition_penalty=3.0)
