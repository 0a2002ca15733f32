"""Notebook 1b, exercise 1: truncated noise through the normal CDF."""

import numpy as np
from scipy.stats import norm


def truncate(z, t):
    """Map N(0, 1) values onto N(0, 1) truncated to [-t, t]: u = Phi(-t) + Phi(z) (1 - 2 Phi(-t)), z' = Phi^-1(u)."""
    low = norm.cdf(-t)
    u = low + norm.cdf(np.asarray(z, np.float64)) * (1.0 - 2.0 * low)
    return norm.ppf(u).astype("float32")
