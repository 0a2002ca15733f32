"""Same-run references for the benches: which machine, how fast it multiplies matrices and reads memory right now.

These VMs drift by up to 2x between hours, so every bench measures its own references in the same process and
reports ratios to them. Also the one timing discipline every section uses: warm-up apart, variants alternated
(ABAB...) so that drift hits them all alike, median of the repeats.
"""

from __future__ import annotations

import os
import platform
import statistics
import time
from typing import Callable

import keras
import tensorflow as tf


def gpus() -> list[str]:
    return [d.name for d in tf.config.list_physical_devices("GPU")]


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    gpu = ", ".join(tf.config.experimental.get_device_details(d).get("device_name", d.name)
                    for d in tf.config.list_physical_devices("GPU"))
    from aigc_tf.hardware import describe

    return (f"{cpu}, {os.cpu_count()} logical CPUs ({describe()}), GPU: {gpu or 'none'}; "
            f"TensorFlow {tf.__version__}, Keras {keras.__version__}")


def seconds(fn: Callable[[], object]) -> float:
    """Wall time of one call; `fn` must return something whose `numpy()`/`float()` waits for the result."""
    began = time.perf_counter()
    _wait(fn())
    return time.perf_counter() - began


def _wait(result) -> None:
    for value in tf.nest.flatten(result):
        if hasattr(value, "numpy"):
            value.numpy()


def alternate(variants: dict[str, Callable[[], float]], repeats: int) -> dict[str, list[float]]:
    """Rates from `repeats` rounds of A, B, C, A, B, C...; each callable returns one rate (higher is faster)."""
    rates: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(repeats):
        for name, measure in variants.items():
            rates[name].append(measure())
    return rates


def median(values: list[float]) -> float:
    return float(statistics.median(values))


def gemm_gflops(dtype: str = "float32", repeats: int = 5) -> float:
    """GFLOP/s of an LM-head-sized matmul [1024, 256] x [256, 50257] in `dtype`, median of `repeats`.

    A plain `tf.function` (oneDNN on CPU): the peak the GAN step and training are compared with.
    """
    a = tf.cast(tf.random.normal([1024, 256]), dtype)
    b = tf.cast(tf.random.normal([256, 50257]), dtype)
    matmul = tf.function(lambda x, y: tf.reduce_sum(tf.cast(tf.matmul(x, y), tf.float32)))
    matmul(a, b).numpy()
    return 2 * 1024 * 256 * 50257 / median([seconds(lambda: matmul(a, b)) for _ in range(repeats)]) / 1e9


def bandwidth_gbs(megabytes: int = 512, repeats: int = 5) -> float:
    """Memory read bandwidth (GB/s): an XLA-compiled sum over a `megabytes` fp32 array, far larger than the caches.

    The ceiling for batch-1 decoding, which must read every weight once per token.
    """
    data = tf.random.normal([megabytes * 2**20 // 4])
    read = tf.function(lambda x: tf.reduce_sum(x), jit_compile=True)
    read(data).numpy()
    return megabytes * 2**20 / median([seconds(lambda: read(data)) for _ in range(repeats)]) / 1e9


def probes(repeats: int = 5) -> dict:
    return {"machine": machine(),
            "gemm_gflops": {"fp32": gemm_gflops("float32", repeats), "bf16": gemm_gflops("bfloat16", repeats)},
            "bandwidth_gbs": bandwidth_gbs(repeats=repeats)}
