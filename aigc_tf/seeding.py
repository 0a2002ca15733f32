"""Seeds without hidden global state: `seeded(seed)` scopes every random source a Keras model build draws from.

Keras layers built without an explicit seed (keras-hub's GPT-2, Dropout) take their initialiser and dropout seeds
from Python's `random` module, and unseeded `keras.random` ops from Keras' global generator. The usual
`keras.utils.set_random_seed(seed)` sets those for the rest of the process, so a library call would silently reseed
its caller's notebook. `seeded(seed)` sets them for one block and restores them afterwards: the same seed builds the
same weights, and the caller's random streams continue as if nothing happened.
"""

from __future__ import annotations

import contextlib
import random

import numpy as np

from aigc_tf.compat import keras_global_seed_generator


@contextlib.contextmanager
def seeded(seed: int):
    """Python's `random`, NumPy's legacy global generator and Keras' global generator seeded with `seed` inside the
    block, and restored on exit (also on an exception)."""
    python_state, numpy_state = random.getstate(), np.random.get_state()
    random.seed(seed)
    np.random.seed(seed % 2**32)
    try:
        with keras_global_seed_generator(seed):
            yield
    finally:
        random.setstate(python_state)
        np.random.set_state(numpy_state)
