"""GAN train-step speed: eager, plain tf.function, XLA, the real tf.data-fed loop, and bf16, against the GEMM peak.

All variants run the project's own step (`aigc_tf.gan.train.GAN.train_step`) on the default nets at batch 256.
`xla` runs it on one in-memory batch, `xla_pipeline` fed by the project's tf.data pipeline (the share of time spent
waiting in `next()` is reported); `bf16_*` build the nets under `mixed_bfloat16` (`aigc-tf gan train --precision
bf16`). MFU = steps/s x matmul FLOPs per step / the same run's fp32 GEMM FLOP/s.
"""

from __future__ import annotations

import time

import numpy as np
import tensorflow as tf

from aigc_tf.config import GANConfig
from aigc_tf.data import images as image_data
from aigc_tf.gan.sample import generate
from aigc_tf.gan.train import GAN
from machine import alternate, median, seconds

VARIANTS = {  # name: (precision, jit_compile; None = eager)
    "eager": ("fp32", None), "function": ("fp32", False), "xla": ("fp32", True),
    "bf16_function": ("bf16", False), "bf16_xla": ("bf16", True),
}


# The step this bench times and counts: the plain MLP GAN's, unconditioned. The default recipe's k-means clusters add a
# one-hot to G's and D's inputs (and need each batch's clusters), which `step_gemm_shapes` does not count.
PLAIN_STEP = {"condition": "none"}


def step_gemm_shapes(config: GANConfig, batch_size: int) -> list[tuple[int, int, int]]:
    """The (M, K, N) of every matmul of one train step (both networks), counted by hand from the Dense shapes.

    Per Dense layer: a forward, a weight-gradient and an input-gradient matmul, each 2*batch*in*out FLOPs.
    G: forward + dW + dx (no dx into the noise). D on real: forward + dW + dx below the first layer.
    D on fake: forward + dW + dx below the first layer (the D tape) + dx through every layer (the G tape, whose
    gradient must reach G). Elementwise ops are left out: they are not what bounds the step.
    """
    g_dims = [config.latent_dim, *config.generator_units, 28 * 28]
    d_dims = [28 * 28, *config.discriminator_units, 1]
    b, shapes = batch_size, []
    for dims, dx_all in ((g_dims, False), (d_dims, False), (d_dims, False), (d_dims, True)):
        if dx_all:  # the G tape's extra input-gradients through every D layer
            shapes += [(b, o, i) for i, o in zip(dims, dims[1:])]
            continue
        layers = list(zip(dims, dims[1:]))
        shapes += [(b, i, o) for i, o in layers]  # forward
        shapes += [(i, b, o) for i, o in layers]  # weight gradients
        shapes += [(b, o, i) for i, o in layers[1:]]  # input gradients below the first layer
    return shapes


def dense_step_flops(config: GANConfig, batch_size: int) -> float:
    """Matmul FLOPs of one train step: 2*M*K*N summed over `step_gemm_shapes`."""
    return float(sum(2 * m * k * n for m, k, n in step_gemm_shapes(config, batch_size)))


def gemm_ceiling_steps_per_s(config: GANConfig, batch_size: int, steps: int, repeats: int) -> float:
    """Steps/s if a step were only its matmuls: the same GEMM shapes alone in one XLA program, nothing else.

    This is the MFU ceiling of the step's own shapes (small matmuls run below the large probe's peak); the gap between
    it and the real step is the step's other work (elementwise, BatchNorm, Adam, the tapes).
    """
    rng = np.random.default_rng(0)
    operands = [(tf.constant(rng.standard_normal((m, k)), tf.float32), tf.constant(rng.standard_normal((k, n)),
                 tf.float32)) for m, k, n in step_gemm_shapes(config, batch_size)]

    @tf.function(jit_compile=True)
    def gemms_only(scale):
        return {"g_loss": tf.add_n([tf.reduce_sum(tf.matmul(a * scale, b)) for a, b in operands])}

    scale = tf.constant(1.0)
    gemms_only(scale)
    return median([_rate(lambda _: gemms_only(scale), lambda: None, steps) for _ in range(repeats)])


def _step_fn(config, jit):
    gan = GAN(config)
    return gan, (gan.train_step if jit is None else tf.function(gan.train_step, jit_compile=jit))


def _rate(step, next_batch, steps: int) -> float:
    began = time.perf_counter()
    for _ in range(steps):
        out = step(next_batch())
    float(out["g_loss"])  # wait for the last step
    return steps / (time.perf_counter() - began)


def measure(images: np.ndarray, peak_gflops: float, *, batch_size: int = 256, steps: int = 30, repeats: int = 5,
            scaling_batches=(64, 256, 1024), fid_steps: int = 0) -> dict:
    base = GANConfig(batch_size=batch_size, **PLAIN_STEP)
    batch = tf.constant(images[:batch_size].astype(np.float32) / 127.5 - 1.0)
    flops = dense_step_flops(base, batch_size)
    measures, first_call = {}, {}
    for name, (precision, jit) in VARIANTS.items():
        _, step = _step_fn(base.replace(precision=precision), jit)
        first_call[name] = seconds(lambda: step(batch))
        n = max(2, steps // 6) if jit is None else steps
        measures[name] = lambda step=step, n=n: _rate(step, lambda: batch, n)
        if name == "xla":  # the same compiled step, fed by the real input pipeline
            batches = iter(image_data.training_batches(images, batch_size, seed=0))
            waits = []

            def fed(step=step, batches=batches):
                began = time.perf_counter()
                value = next(batches)
                waits.append(time.perf_counter() - began)
                return value

            for _ in range(3):
                step(fed())
            waits.clear()
            measures["xla_pipeline"] = lambda step=step, fed=fed: _rate(step, fed, steps)
    # Attribution, not a shipped variant: the same XLA step without D's Dropout (rate 0 skips the layer), which
    # prices the random masks (Keras draws them with TF's stateless RNG) inside the step's non-matmul time.
    _, no_dropout = _step_fn(base.replace(dropout=0.0), True)
    no_dropout(batch)
    measures["xla_no_dropout"] = lambda: _rate(no_dropout, lambda: batch, steps)
    rates = alternate(measures, repeats)
    attribution = {"xla_no_dropout": median(rates.pop("xla_no_dropout"))}
    pipeline_alone = _rate(lambda b: {"g_loss": tf.reduce_sum(b[:1, :1, :1, 0])}, fed, steps * 2)
    steps_per_s = {k: median(v) for k, v in rates.items()}
    ceiling = gemm_ceiling_steps_per_s(base, batch_size, steps, repeats)
    total_pipelined = sum(steps / r for r in rates["xla_pipeline"])
    result = {
        "flops_per_step": flops, "batch_size": batch_size,
        "mfu_xla": steps_per_s["xla"] * flops / (peak_gflops * 1e9),
        "mfu": {k: v * flops / (peak_gflops * 1e9) for k, v in steps_per_s.items()},
        "steps_per_s": steps_per_s, "steps_per_s_repeats": rates, "first_call_s": first_call,
        "pipeline_wait_share": sum(waits) / total_pipelined,
        "pipeline_alone_batches_per_s": pipeline_alone,  # the input pipeline with no step: its own CPU cost
        "gemm_ceiling_steps_per_s": ceiling, "attribution_steps_per_s": attribution,
        "mfu_gemm_ceiling": ceiling * flops / (peak_gflops * 1e9),
        "scaling": _batch_scaling(images, peak_gflops, scaling_batches, batch_size, steps_per_s["xla"], repeats),
    }
    if fid_steps:
        result["fid"] = fid_at_equal_budget(images, fid_steps)
    return result


def _batch_scaling(images, peak_gflops, batches, measured_batch, measured_rate, repeats) -> dict:
    """XLA steps/s and MFU against batch size (the measured batch reuses its figure)."""
    rows = {}
    for batch_size in batches:
        config = GANConfig(batch_size=batch_size, **PLAIN_STEP)
        if batch_size == measured_batch:
            rate = measured_rate
        else:
            batch = tf.constant(images[:batch_size].astype(np.float32) / 127.5 - 1.0)
            _, step = _step_fn(config, True)
            step(batch)
            steps = max(4, int(30 * 256 / batch_size) // 2)
            rate = median([_rate(step, lambda: batch, steps) for _ in range(max(3, repeats // 2))])
        flops = dense_step_flops(config, batch_size)
        rows[str(batch_size)] = {"steps_per_s": rate, "examples_per_s": rate * batch_size,
                                 "mfu": rate * flops / (peak_gflops * 1e9)}
    return rows


def fid_at_equal_budget(images: np.ndarray, steps: int) -> dict:
    """FID of fp32 (XLA) and bf16 (plain tf.function) GANs after the same number of steps at the default batch."""
    from aigc_tf.metrics.image_quality import sample_quality

    out = {"steps": steps}
    for precision, jit in (("fp32", True), ("bf16", False)):
        config = GANConfig(precision=precision, **PLAIN_STEP)
        gan, step = _step_fn(config, jit)
        batches = iter(image_data.training_batches(images, config.batch_size, seed=0))
        began = time.perf_counter()
        for _ in range(steps):
            metrics = step(next(batches))
        float(metrics["g_loss"])
        train_s = time.perf_counter() - began
        rng = np.random.default_rng(0)
        report = sample_quality(lambda n: generate(gan.generator, rng.standard_normal((n, config.latent_dim))),
                                verbose=0)
        out[precision] = {"fid": report["fid"], "real_fid_floor": report["real_fid_floor"], "train_s": train_s}
    out["fid_ratio_bf16"] = out["bf16"]["fid"] / out["fp32"]["fid"]
    return out
