"""Same-run references for the benches: which machine, and how fast it multiplies matrices right now.

These VMs drift by up to 2x between hours, so every bench measures its own reference in the same process and
reports ratios to it.
"""

from __future__ import annotations

import os
import platform
import statistics
import time

import keras
import tensorflow as tf


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    gpus = [d.name for d in tf.config.list_physical_devices("GPU")]
    return (f"{cpu}, {os.cpu_count()} logical CPUs, GPU: {', '.join(gpus) or 'none'}; "
            f"TensorFlow {tf.__version__}, Keras {keras.__version__}")


def gemm_gflops(repeats: int = 5) -> float:
    """fp32 GFLOP/s of an LM-head-sized matmul [1024, 256] x [256, 50257], median of `repeats`."""
    a = tf.random.normal([1024, 256])
    b = tf.random.normal([256, 50257])
    matmul = tf.function(lambda x, y: tf.reduce_sum(tf.matmul(x, y)))
    matmul(a, b).numpy()
    times = []
    for _ in range(repeats):
        began = time.perf_counter()
        matmul(a, b).numpy()
        times.append(time.perf_counter() - began)
    return 2 * 1024 * 256 * 50257 / statistics.median(times) / 1e9
