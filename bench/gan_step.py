"""GAN train-step speed: eager vs plain tf.function vs XLA, alternated in one run, against the machine's GEMM peak.

    python bench/gan_step.py [--batch-size 256] [--repeats 5] [--steps 40] [--quick]

Prints the machine, a same-run fp32 GEMM reference (GFLOP/s), steps/s (median over repeats) per variant with the
ratios, the first-call (trace/compile) time apart, the step's model FLOP utilisation, and how much of the real
training loop's time is spent waiting on the tf.data input pipeline. Variants alternate (ABCABC...) so that the
machine's drift (these VMs move by up to 2x between hours) hits them all alike. Never a timed test.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from aigc_tf.config import GANConfig  # noqa: E402
from aigc_tf.data import images as image_data  # noqa: E402
from aigc_tf.gan.train import GAN  # noqa: E402
from machine import gemm_gflops, machine  # noqa: E402  (bench/machine.py)


def dense_step_flops(config: GANConfig, batch_size: int) -> float:
    """Matmul FLOPs of one train step (both networks), counted by hand from the Dense shapes.

    Per Dense layer and example: forward, weight-gradient and input-gradient matmuls each cost 2*in*out FLOPs.
    G: forward + dW + dx (no dx into the noise). D on real: forward + dW + dx below the first layer.
    D on fake: forward + dW + dx below the first layer (the D tape) + dx through every layer (the G tape, whose
    gradient must reach G). Elementwise ops are left out: they are not what bounds the step.
    """
    g_dims = [config.latent_dim, *config.generator_units, 28 * 28]
    d_dims = [28 * 28, *config.discriminator_units, 1]
    g = [a * b for a, b in zip(g_dims, g_dims[1:])]
    d = [a * b for a, b in zip(d_dims, d_dims[1:])]
    g_macs = 2 * sum(g) + sum(g[1:])
    d_real = 2 * sum(d) + sum(d[1:])
    d_fake = 2 * sum(d) + sum(d[1:]) + sum(d)
    return 2.0 * batch_size * (g_macs + d_real + d_fake)


def time_steps(step, batch, steps: int) -> float:
    began = time.perf_counter()
    for _ in range(steps):
        out = step(batch)
    float(out["g_loss"])  # wait for the last step
    return steps / (time.perf_counter() - began)


def pipeline_rate(gan: GAN, step, images: np.ndarray, batch_size: int, steps: int) -> tuple[float, float]:
    """Steps/s of the step fed by the real tf.data pipeline, and the share of that time spent in `next()`."""
    batches = iter(image_data.training_batches(images, batch_size, seed=0))
    for _ in range(3):
        step(next(batches))
    waiting, began = 0.0, time.perf_counter()
    for _ in range(steps):
        t = time.perf_counter()
        batch = next(batches)
        waiting += time.perf_counter() - t
        out = step(batch)
    float(out["g_loss"])
    total = time.perf_counter() - began
    return steps / total, waiting / total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--steps", type=int, default=40, help="steps per timed repeat")
    parser.add_argument("--quick", action="store_true", help="smoke run: 2 repeats of 5 steps")
    args = parser.parse_args()
    if args.quick:
        args.repeats, args.steps = 2, 5

    config = GANConfig(batch_size=args.batch_size)
    images = image_data.load_arrays(config.dataset, "train").images
    batch = tf.constant(images[: args.batch_size].astype(np.float32) / 127.5 - 1.0)
    print(f"machine: {machine()}")
    peak = gemm_gflops()
    flops = dense_step_flops(config, args.batch_size)
    print(f"fp32 GEMM [1024,256]x[256,50257]: {peak:.1f} GFLOP/s (same run)")
    print(f"GAN step: batch {args.batch_size}, {flops / 1e9:.3f} GFLOP of matmuls per step")

    variants = {}
    for name, jit in (("eager", None), ("function", False), ("xla", True)):
        gan = GAN(config)
        step = gan.train_step if jit is None else gan.compiled_train_step(jit_compile=jit)
        began = time.perf_counter()
        float(step(batch)["g_loss"])
        variants[name] = {"gan": gan, "step": step, "first_call_s": time.perf_counter() - began, "rates": []}
    for _ in range(args.repeats):  # ABCABC...
        for name, v in variants.items():
            steps = max(2, args.steps // 5) if name == "eager" else args.steps
            v["rates"].append(time_steps(v["step"], batch, steps))
    xla = variants["xla"]
    pipe_rate, waiting = pipeline_rate(xla["gan"], xla["step"], images, args.batch_size, args.steps * 2)

    print(f"\n{'variant':<14}{'steps/s':>10}{'x eager':>10}{'x function':>12}{'MFU':>8}{'first call':>12}")
    base = {k: statistics.median(v["rates"]) for k, v in variants.items()}
    rows = [(k, base[k], variants[k]["first_call_s"]) for k in variants] + [("xla_pipeline", pipe_rate, None)]
    for name, rate, first in rows:
        mfu = rate * flops / (peak * 1e9)
        first_text = f"{first:.2f} s" if first is not None else "-"
        print(f"{name:<14}{rate:>10.1f}{rate / base['eager']:>10.2f}{rate / base['function']:>12.2f}"
              f"{mfu:>8.0%}{first_text:>12}")
    print(f"\ninput pipeline: xla_pipeline / xla = {pipe_rate / base['xla']:.3f}; "
          f"{waiting:.1%} of the pipelined loop's time is spent waiting in next()")


if __name__ == "__main__":
    main()
