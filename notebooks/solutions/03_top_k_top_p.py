"""Notebook 3, exercise 1: top-k and top-p (nucleus) filtering of next-token logits, shape (B, V)."""

import numpy as np


def top_k_filter(logits, k):
    """Keep the k largest logits of each row; set the others to -inf."""
    logits = np.asarray(logits, np.float32)
    kth_largest = np.sort(logits, axis=-1)[:, -k][:, None]  # (B, 1)
    return np.where(logits >= kth_largest, logits, -np.inf)


def top_p_filter(logits, p):
    """Keep the smallest set of most likely tokens whose probability mass reaches p; set the others to -inf."""
    logits = np.asarray(logits, np.float32)
    probabilities = np.exp(logits - logits.max(axis=-1, keepdims=True))
    probabilities /= probabilities.sum(axis=-1, keepdims=True)
    order = np.argsort(-probabilities, axis=-1)  # most likely first
    sorted_mass = np.cumsum(np.take_along_axis(probabilities, order, axis=-1), axis=-1)
    # A token is kept when the mass of the tokens before it has not reached p yet (the first is always kept).
    keep_sorted = (sorted_mass - np.take_along_axis(probabilities, order, axis=-1)) < p - 1e-7
    keep = np.zeros_like(keep_sorted)
    np.put_along_axis(keep, order, keep_sorted, axis=-1)
    return np.where(keep, logits, -np.inf)
