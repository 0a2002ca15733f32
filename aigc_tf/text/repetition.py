"""Keeping a small model from looping: a repetition penalty and a no-repeat-n-gram ban, for any keras-hub sampler.

A model that has seen 0.6 M tokens puts most of its mass on a few frequent phrases, and greedy decoding then repeats
"of the United States" forever: each repeat makes the next one more likely. Two standard remedies edit the logits
before the sampler picks a token:
- repetition penalty (Keskar et al. 2019, CTRL): every token already in the text has its logit divided by `penalty`
  when positive, multiplied by it when negative, so it becomes less likely but not impossible;
- no-repeat-n-gram (Paulus et al. 2017; Hugging Face's `no_repeat_ngram_size`): a token that would complete an
  n-gram already present in the text is banned outright.

keras-hub 0.32's samplers have neither. They all run the same loop, which asks `next(prompt, cache, index)` for
the logits of position `index`, so `with_repetition_control` wraps that function: the sampler's own choice rule
(greedy, top-k, top-p, beam, random) is untouched and the edit happens inside its compiled loop.
"""

from __future__ import annotations

import keras_hub
import tensorflow as tf

from aigc_tf import AigcError

BANNED = -1e9  # a logit no softmax turns into a chosen token


def penalize_repeats(logits, token_ids, index, penalty: float):
    """CTRL's penalty on logits (B, V) for every token among token_ids[:, :index] (B, L)."""
    vocab = tf.shape(logits)[-1]
    seen = _tokens_before(token_ids, index, vocab)  # (B, V) bool
    penalized = tf.where(logits > 0, logits / penalty, logits * penalty)
    return tf.where(seen, penalized, logits)


def ban_repeated_ngrams(logits, token_ids, index, n: int):
    """Set to BANNED each token that would complete an n-gram already in token_ids[:, :index] (B, L).

    The last n - 1 tokens (positions index-n+1 .. index-1) are compared with every earlier window of n - 1 tokens;
    where they match, the token that followed that window is banned.
    """
    if n < 1:
        return logits
    batch, length = tf.shape(token_ids)[0], tf.shape(token_ids)[1]
    vocab = tf.shape(logits)[-1]
    starts = tf.range(length)  # candidate window starts j: window j .. j+n-2, follower j+n-1
    match = (starts + n - 1 < index)[None, :] & tf.ones([batch, 1], tf.bool)  # the follower is already written
    for k in range(n - 1):
        window = tf.gather(token_ids, tf.minimum(starts + k, length - 1), axis=1)  # (B, L): token j+k
        last = tf.gather(token_ids, tf.maximum(index - (n - 1) + k, 0), axis=1)[:, None]  # (B, 1)
        match &= tf.equal(window, last)
    match &= tf.fill([batch, length], index >= n - 1)  # not enough history for a full (n-1)-token window
    followers = tf.gather(token_ids, tf.minimum(starts + n - 1, length - 1), axis=1)  # (B, L)
    banned = _scatter_any(followers, match, vocab)
    return tf.where(banned, tf.cast(BANNED, logits.dtype), logits)


def _tokens_before(token_ids, index, vocab):
    """(B, V) bool: which tokens occur in token_ids[:, :index]."""
    length = tf.shape(token_ids)[1]
    valid = tf.broadcast_to(tf.range(length)[None, :] < index, tf.shape(token_ids))
    return _scatter_any(token_ids, valid, vocab)


def _scatter_any(token_ids, where, vocab):
    """(B, V) bool: token v is marked in row b if token_ids[b, j] == v for some j with where[b, j]."""
    batch, length = tf.shape(token_ids)[0], tf.shape(token_ids)[1]
    rows = tf.broadcast_to(tf.range(batch)[:, None], [batch, length])
    indices = tf.stack([rows, tf.cast(token_ids, tf.int32)], axis=-1)  # (B, L, 2)
    counts = tf.scatter_nd(indices, tf.cast(where, tf.int32), [batch, vocab])
    return counts > 0


def with_repetition_control(sampler, repetition_penalty: float = 1.0, no_repeat_ngram_size: int = 0):
    """`sampler` (a keras-hub Sampler) with the two controls applied to its logits; itself when both are off.

    `repetition_penalty` 1.0 is off (CTRL used 1.2); `no_repeat_ngram_size` 0 is off (3 is a common choice).
    """
    if not controls_on(repetition_penalty, no_repeat_ngram_size):
        return sampler
    return RepetitionControlled(sampler, repetition_penalty, no_repeat_ngram_size)


def controls_on(repetition_penalty: float = 1.0, no_repeat_ngram_size: int = 0) -> bool:
    """Whether either control edits the logits; a one-line error for a value out of range."""
    if not repetition_penalty >= 1.0:
        raise AigcError(f"`repetition_penalty` must be >= 1 (1 is off), got {repetition_penalty}")
    if no_repeat_ngram_size < 0:
        raise AigcError(f"`no_repeat_ngram_size` must be >= 0 (0 is off), got {no_repeat_ngram_size}")
    return repetition_penalty != 1.0 or no_repeat_ngram_size > 0


class RepetitionControlled(keras_hub.samplers.Sampler):
    """Delegates to the wrapped sampler, handing it a `next` whose logits carry the controls."""

    def __init__(self, inner, repetition_penalty: float, no_repeat_ngram_size: int):
        super().__init__(temperature=getattr(inner, "temperature", 1.0))
        self.inner = inner
        self.repetition_penalty = repetition_penalty
        self.no_repeat_ngram_size = no_repeat_ngram_size

    @property
    def variables(self):
        return self.inner.variables  # the wrapped sampler's seed state

    def __call__(self, next, prompt, *args, **kwargs):
        def controlled_next(token_ids, cache, index):
            logits, hidden, cache = next(token_ids, cache, index)
            if self.repetition_penalty != 1.0:
                logits = penalize_repeats(logits, token_ids, index, self.repetition_penalty)
            if self.no_repeat_ngram_size:
                logits = ban_repeated_ngrams(logits, token_ids, index, self.no_repeat_ngram_size)
            return logits, hidden, cache

        return self.inner(controlled_next, prompt, *args, **kwargs)
