"""What the tutorials in notebooks/ share: sliders over a drawing function, and the checkers of their exercises.

`sliders(draw, **controls)` is `ipywidgets.interactive` that draws nothing when it is created: the notebook calls
`draw` once itself, so every static view (GitHub, a rendered copy, CI's headless run) shows the figure, and the
widget draws its own copy only once a control moves. A figure drawn into a widget at its creation makes a headless
runner (nbclient, `jupyter nbconvert --execute`) mirror a widget update back to the kernel while it waits for the
cell to finish, a race that can hang the run (jupyter/nbclient#312). Without ipywidgets it returns a one-line
note instead of the controls, so the notebooks still run top to bottom.

Each notebook has at least one implement-it exercise: a stub that raises `NotImplementedError`, then a cell that
calls `check(name, your_function)`. The checkers below assert behaviour on fixed inputs (values computed by hand or
by an independent formula), not the shape of the code, so any correct implementation passes. The solutions live in
notebooks/solutions/, and tests/notebooks/test_exercises.py runs every checker against its solution (must pass) and against
the stub cut from the notebook (must fail).
"""

from __future__ import annotations

import functools
import json
import math

import numpy as np

# ---------------------------------------------------------------------------------------------------------- sliders


def sliders(draw, **controls):
    """`ipywidgets.interactive(draw, **controls)`, except that the call it makes when it is created draws nothing.

    Args:
        draw: a function that draws one figure from keyword arguments (it calls `plt.show()` itself).
        **controls: one control per argument of `draw`, as `interactive` abbreviations, so a notebook needs no
            ipywidgets import: `(low, high, step)` is a slider, a list of strings a menu, a string a text box; the
            initial values are `draw`'s defaults.
    Returns:
        the widget to `display`, or a short note when ipywidgets is not installed.
    """
    try:
        import ipywidgets as widgets
    except ImportError:
        return "(sliders need ipywidgets: pip install -e \".[notebooks]\"; the figure above shows the defaults)"
    calls = []

    @functools.wraps(draw)  # interactive reads the defaults of `draw` for controls given as abbreviations
    def draw_after_the_first_call(**values):
        if calls:
            draw(**values)
        calls.append(values)

    widget = widgets.interactive(draw_after_the_first_call, **controls)
    for control in widget.children:  # redraw when a slider is let go or a text is entered, not at every pixel
        if hasattr(control, "continuous_update"):
            control.continuous_update = False
    return widget


# -------------------------------------------------------------------------------------------------------- exercises

def _close(actual, expected, what: str, atol: float = 1e-5) -> None:
    actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape}, expected {expected.shape}"
    assert np.allclose(actual, expected, atol=atol), f"{what}: got {actual.round(4)}, expected {expected.round(4)}"


def check_gan_losses(generator_loss, discriminator_loss) -> None:
    """Notebook 1: the non-saturating G loss and D's loss with one-sided label smoothing, per example.

    generator_loss(fake_logits) -> (B,) is -log sigmoid(l) = softplus(-l); discriminator_loss(real_logits,
    fake_logits, label_smoothing) -> (B,) is BCE(1 - s, real) + BCE(0, fake). Logits come as (B, 1) tensors.
    """
    import tensorflow as tf

    logits = tf.constant([[-4.0], [0.0], [4.0]])
    softplus = lambda x: np.log1p(np.exp(x))  # noqa: E731
    l = np.array([-4.0, 0.0, 4.0])
    _close(generator_loss(logits), softplus(-l), "generator_loss([-4, 0, 4])")
    real = tf.fill([3, 1], 2.0)
    for s in (0.0, 0.1):
        # BCE(target t, logit x) = -t log sigmoid(x) - (1 - t) log(1 - sigmoid(x))
        #                        = t softplus(-x) + (1 - t) softplus(x)
        expected = (1 - s) * softplus(-2.0) + s * softplus(2.0) + softplus(l)
        _close(discriminator_loss(real, logits, s), expected, f"discriminator_loss(real 2, fake [-4, 0, 4], {s})")
    # Non-saturating: where D rejects a fake with confidence, G still gets a gradient of about -1 per unit of logit
    # (the minimax loss log(1 - D) would give about -sigmoid(l), almost 0).
    confident_reject = tf.Variable([[-10.0]])
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(generator_loss(confident_reject))
    gradient = tape.gradient(loss, confident_reject)
    assert gradient is not None, "generator_loss: no gradient flows back to the logits (did you leave TensorFlow?)"
    assert float(gradient[0, 0]) < -0.99, f"generator_loss saturates: d loss / d logit at -10 is {float(gradient):.4f}"


def check_truncate(truncate) -> None:
    """Notebook 1b: truncate(z, t) maps N(0, 1) values onto N(0, 1) truncated to [-t, t] through the CDF.

    z' = Phi^-1(Phi(-t) + Phi(z) (1 - 2 Phi(-t))): exact, deterministic and monotone, so nearby noise stays nearby.
    The reference is scipy's truncnorm.ppf of Phi(z), an independent formula for the same map.
    """
    from scipy.stats import norm, truncnorm

    z = np.linspace(-5.0, 5.0, 41).astype("float32")
    for t in (1.0, 2.0):
        out = np.asarray(truncate(z, t), np.float64)
        assert out.shape == z.shape, f"truncate: shape {out.shape}, expected {z.shape}"
        assert np.all(np.abs(out) <= t + 1e-4), f"truncate(z, {t}): values outside [-{t}, {t}]"
        assert np.all(np.diff(out) >= 0), f"truncate(z, {t}) is not monotone: nearby noise must stay nearby"
        _close(out, truncnorm.ppf(norm.cdf(z), -t, t), f"truncate(z, {t})", atol=1e-3)
    draws = np.random.default_rng(0).standard_normal(200_000).astype("float32")
    std = float(np.std(np.asarray(truncate(draws, 1.0))))
    assert abs(std - truncnorm.std(-1, 1)) < 0.01, f"truncate(N(0, 1), 1) has std {std:.3f}, expected 0.538"


def check_reparameterize(reparameterize) -> None:
    """Notebook 2: z = mean + exp(log_variance / 2) * epsilon, with gradients into mean and log_variance.

    On 50,000 draws of epsilon, mean (1, -2) and variance (4, 1/4) must give samples with those means and standard
    deviations (2, 1/2); d z / d mean is 1 and d z / d log_variance is sigma * epsilon / 2.
    """
    import tensorflow as tf

    n = 50_000
    epsilon = tf.constant(np.random.default_rng(0).standard_normal((n, 2)), tf.float32)
    mean = tf.Variable(tf.tile([[1.0, -2.0]], [n, 1]))
    log_variance = tf.Variable(tf.tile([[math.log(4.0), math.log(0.25)]], [n, 1]))
    with tf.GradientTape() as tape:
        z = reparameterize(mean, log_variance, epsilon)
        total = tf.reduce_sum(z)
    z = np.asarray(z)
    assert z.shape == (n, 2), f"reparameterize: shape {z.shape}, expected {(n, 2)}"
    _close(z.mean(axis=0), [1.0, -2.0], "the samples' mean", atol=0.03)
    _close(z.std(axis=0), [2.0, 0.5], "the samples' standard deviation (is it exp(log_variance / 2)?)", atol=0.03)
    d_mean, d_log_variance = tape.gradient(total, [mean, log_variance])
    assert d_mean is not None and d_log_variance is not None, \
        "no gradient reaches mean or log_variance: the sample must be computed from them, not drawn around them"
    _close(d_mean[:3], np.ones((3, 2)), "d z / d mean")
    sigma = np.array([2.0, 0.5])
    _close(d_log_variance[:3], 0.5 * sigma * np.asarray(epsilon[:3]), "d z / d log_variance", atol=1e-4)


# Five tokens with probabilities 0.05, 0.5, 0.1, 0.2, 0.15 (shuffled so the order of the vocabulary is not the
# order of the probabilities), and a second row with the opposite order.
_PROBABILITIES = np.array([[0.05, 0.5, 0.1, 0.2, 0.15], [0.5, 0.05, 0.2, 0.1, 0.15]])
_LOGITS = np.log(_PROBABILITIES).astype("float32") + 3.0  # logits: any constant shift gives the same softmax


def _kept(filtered) -> np.ndarray:
    """Which tokens survive a filter: a finite logit above -1e9 (a filter may use -inf or a very large negative)."""
    filtered = np.asarray(filtered, np.float64)
    assert filtered.shape == _LOGITS.shape, f"the filter returned shape {filtered.shape}, expected {_LOGITS.shape}"
    kept = np.isfinite(filtered) & (filtered > -1e9)
    assert np.allclose(filtered[kept], _LOGITS[kept], atol=1e-5), "a kept token's logit changed: keep them as they were"
    return kept


def check_top_k(top_k_filter) -> None:
    """Notebook 3: top_k_filter(logits, k) keeps the k largest logits of each row and removes the others."""
    for k, expected in ((1, [[1], [0]]), (2, [[1, 3], [0, 2]]), (5, [range(5), range(5)])):
        kept = _kept(top_k_filter(_LOGITS, k))
        for row, tokens in enumerate(expected):
            assert set(np.flatnonzero(kept[row])) == set(tokens), \
                (f"top_k_filter(k={k}) row {row} kept tokens {np.flatnonzero(kept[row]).tolist()}, "
                 f"expected {list(tokens)}")


def check_top_p(top_p_filter) -> None:
    """Notebook 3: top_p_filter(logits, p) keeps, in each row, the smallest set of tokens whose mass is >= p.

    Probabilities 0.5, 0.2, 0.15, 0.1, 0.05: p = 0.5 keeps one token (the 0.5 alone reaches p), p = 0.6 two, p = 0.8
    three (0.85), p = 0.9 four (0.95), p = 1.0 all five. The most likely token is always kept.
    """
    by_rank = [np.argsort(-row) for row in _PROBABILITIES]
    for p, count in ((0.3, 1), (0.5, 1), (0.6, 2), (0.8, 3), (0.9, 4), (1.0, 5)):
        kept = _kept(top_p_filter(_LOGITS, p))
        for row in range(len(_LOGITS)):
            expected = set(by_rank[row][:count])
            assert set(np.flatnonzero(kept[row])) == expected, \
                (f"top_p_filter(p={p}) row {row} kept {np.flatnonzero(kept[row]).tolist()}, expected "
                 f"{sorted(expected)}: the smallest set of tokens, most likely first, whose mass reaches p")


def check_rest_request(rest_request) -> None:
    """Notebook 4: rest_request(inputs, signature_name) -> the JSON body of TF Serving's REST predict, row format.

    {"signature_name": ..., "instances": [{input name: that input's row i, ...} for each row i]}: one instance per
    example, every input split along its first (batch) axis, plain JSON numbers. Inputs whose batch sizes differ
    cannot be split into rows: ValueError.
    """
    noise = np.arange(6, dtype=np.float32).reshape(3, 2)
    digits = np.array([7, 0, 3], np.int32)
    body = rest_request({"noise": noise, "digit": digits}, "sample")
    assert isinstance(body, str), f"rest_request returns the JSON text to POST, not {type(body).__name__}"
    request = json.loads(body)
    assert request.get("signature_name") == "sample", f"signature_name is {request.get('signature_name')!r}"
    instances = request.get("instances")
    assert isinstance(instances, list) and len(instances) == 3, "expected 'instances': one per example, 3 here"
    for i, instance in enumerate(instances):
        assert instance == {"noise": noise[i].tolist(), "digit": int(digits[i])}, \
            f"instance {i} is {instance}, expected row {i} of every input"
    single = json.loads(rest_request({"images": np.zeros((2, 2, 2, 1), np.float32)}, "serving_default"))
    assert [instance["images"] for instance in single["instances"]] == [np.zeros((2, 2, 1)).tolist()] * 2
    try:
        rest_request({"noise": noise, "digit": digits[:2]}, "sample")
    except ValueError:
        pass
    else:
        raise AssertionError("inputs with 3 and 2 rows have no row format: raise ValueError")


def check_lora_dense(LoRADense) -> None:  # noqa: N803 - the argument is a class
    """Notebook 5: LoRADense(base, rank, alpha) wraps a Dense layer: y = base(x) + (alpha / rank) * x A B.

    The base layer is frozen; A (in, rank) and B (rank, out) are the only trainable weights; B starts at zero so the
    wrapped layer first computes exactly what the base did; training moves the output and leaves the base alone.
    """
    import keras
    import tensorflow as tf

    from aigc_tf.seeding import seeded

    x = tf.constant(np.random.default_rng(0).standard_normal((4, 16)), tf.float32)
    with seeded(0):  # the same weights on every run, without reseeding the learner's notebook
        base = keras.layers.Dense(8)
        before = np.asarray(base(x))
        kernel = np.asarray(base.kernel).copy()
        layer = LoRADense(base, rank=2, alpha=4.0)
        y = layer(x)
    _close(y, before, "LoRADense at initialisation (B starts at zero, so it must equal the base layer)")
    trainable = sorted(tuple(w.shape) for w in layer.trainable_weights)
    assert trainable == [(2, 8), (16, 2)], \
        f"trainable weights {trainable}: expected only A (16, 2) and B (2, 8); freeze the base layer"
    optimizer = keras.optimizers.SGD(0.1)
    for _ in range(3):
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(tf.square(layer(x) - 1.0))
        gradients = tape.gradient(loss, layer.trainable_weights)
        assert all(g is not None for g in gradients), "a trainable weight gets no gradient"
        optimizer.apply_gradients(zip(gradients, layer.trainable_weights))
    after = np.asarray(layer(x))
    assert not np.allclose(after, before, atol=1e-4), "three SGD steps did not change the output"
    _close(base.kernel, kernel, "the base kernel after training (it must stay frozen)")
    a, b = (np.asarray(w) for w in sorted(layer.trainable_weights, key=lambda w: tuple(w.shape) != (16, 2)))
    _close(after, before + (4.0 / 2) * np.asarray(x) @ a @ b, "y = base(x) + (alpha / rank) x A B", atol=1e-4)


CHECKS = {
    "gan_losses": check_gan_losses,
    "truncate": check_truncate,
    "reparameterize": check_reparameterize,
    "top_k": check_top_k,
    "top_p": check_top_p,
    "rest_request": check_rest_request,
    "lora_dense": check_lora_dense,
}


def check(name: str, *implementation) -> None:
    """Run exercise `name`'s checker on your implementation and print what it found, without raising.

    A stub still raising NotImplementedError, or a wrong answer, prints why, so a notebook run top to bottom (CI,
    the rendered copies) goes on; the checker itself (`CHECKS[name]`) raises. Returns nothing, so the cell shows only
    the verdict.
    """
    if name not in CHECKS:
        from aigc_tf import AigcError

        raise AigcError(f"no exercise named {name!r}; the exercises are {sorted(CHECKS)}")
    try:
        CHECKS[name](*implementation)
    except NotImplementedError:
        print(f"{name}: not implemented yet. Fill in the cell above and run both cells again "
              "(a solution is in notebooks/solutions/).")
    except AssertionError as err:
        print(f"{name}: not yet. {err}")
    else:
        print(f"{name}: all checks pass.")
