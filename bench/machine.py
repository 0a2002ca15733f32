"""Same-run references for the benches: which machine, how fast it multiplies matrices and reads memory right now.

These VMs drift by up to 2x between hours, so every bench measures its own references in the same process and
reports ratios to them. Also the one timing discipline every section uses: warm-up apart, variants alternated
(ABAB...) so that drift hits them all alike, median of the repeats.

A reference is a ceiling only if it is this machine's peak, not one kernel's: one LM-head GEMM and one XLA
reduce_sum let a GAN step reach 117% "MFU" and fp32 decoding 112% of "the bandwidth ceiling" on an AVX2-only EPYC.
So the GEMM peak is the best over several shapes and both of TensorFlow's CPU GEMMs (oneDNN under `tf.function`,
XLA's dot), the read bandwidth the best over several read kernels (incl. the matvec decoding runs) and sizes, each
configuration the best of its repeats; every configuration's figure is kept, with the CPU's flags, in `probe_log`.
"""

from __future__ import annotations

import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from typing import Callable

import keras
import tensorflow as tf

DTYPES = {"fp32": "float32", "bf16": "bfloat16"}
GEMM_SHAPES = (  # (M, K, N)
    (1024, 1024, 1024), (2048, 2048, 2048),  # square
    (1024, 256, 50257),  # GPT-2's LM head over 1024 rows (the bench's first, single probe)
    (256, 1024, 784), (64, 1024, 784),  # the GAN generator's widest Dense at batch 256 and 64
    (16384, 256, 256),  # tall-skinny
)
GEMM_KERNELS = {"function": False, "xla": True}  # tf.function runs oneDNN's GEMM on CPU; jit_compile XLA's dot
READ_KERNELS = ("reduce_sum", "reduce_sum_xla", "vecmat", "vecmat_xla", "matvec", "matvec_xla")
READ_MEGABYTES = (128, 512)  # both far beyond these VMs' last-level cache (32 MB)
CPU_FLAGS = ("fma", "avx2", "avx512f", "avx512_bf16", "amx_tile", "amx_bf16")
SAMPLE_SECONDS = 0.04  # each timed sample loops a kernel for at least this long

# Every probe this process took, in order. `probes()` returns this list itself (not a copy): bench/run.py spreads the
# first call's dict into results.json, so the start-of-run probe and the end-of-run one both land there.
PROBE_LOG: list[dict] = []


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


def cpu_info(text: str | None = None) -> dict:
    """The CPU's vendor, family, model, core counts and the flags that decide its GEMM peak, from /proc/cpuinfo.

    `flags` maps each of CPU_FLAGS to whether the CPU has it (all False where /proc/cpuinfo is missing).
    """
    if text is None:
        try:
            with open("/proc/cpuinfo") as f:
                text = f.read()
        except OSError:
            text = ""
    blocks = [dict((k.strip(), v.strip()) for k, _, v in (line.partition(":") for line in block.splitlines()))
              for block in text.strip().split("\n\n") if block.strip()]
    first = blocks[0] if blocks else {}
    flags = set((first.get("flags") or first.get("Features") or "").split())
    cores = {(b.get("physical id"), b.get("core id")) for b in blocks if "core id" in b}
    return {"vendor": first.get("vendor_id"), "family": first.get("cpu family"), "model": first.get("model"),
            "logical_cpus": len(blocks) or os.cpu_count(), "physical_cores": len(cores) or None,
            "flags": {flag: flag in flags for flag in CPU_FLAGS}}


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


def best_rate(call: Callable[[], object], work: float, repeats: int) -> float:
    """The best of `repeats` rates (`work` per second) of `call`, after a warm-up (compile) call.

    A peak, not a typical figure: noise on a VM only ever slows a kernel down. Each sample loops `call` for at least
    SAMPLE_SECONDS, so that small kernels are not timed at the clock's and the dispatch's resolution; the call that
    measures how many loops that takes is the first sample when one call is long enough.
    """
    _wait(call())
    once = seconds(call)
    loops = max(1, math.ceil(SAMPLE_SECONDS / max(once, 1e-9)))
    rates = [work / once] if loops == 1 else []
    while len(rates) < repeats:
        began = time.perf_counter()
        for _ in range(loops):
            _wait(call())
        rates.append(work * loops / (time.perf_counter() - began))
    return max(rates)


def shape_name(m: int, k: int, n: int) -> str:
    return f"[{m},{k}]x[{k},{n}]"


def gemm_probe(dtype: str = "fp32", repeats: int = 5, shapes=GEMM_SHAPES, kernels=tuple(GEMM_KERNELS),
               rate: Callable = best_rate) -> dict[str, float]:
    """GFLOP/s of every (kernel, shape) in `dtype` ("fp32"/"bf16"): {"xla [1024,256]x[256,50257]": 127.8, ...}."""
    out = {}
    for m, k, n in shapes:
        a = tf.cast(tf.random.normal([m, k]), DTYPES.get(dtype, dtype))  # "fp32" or "float32" alike
        b = tf.cast(tf.random.normal([k, n]), DTYPES.get(dtype, dtype))
        for kernel in kernels:
            matmul = tf.function(tf.matmul, jit_compile=GEMM_KERNELS[kernel], autograph=False)
            out[f"{kernel} {shape_name(m, k, n)}"] = rate(lambda: matmul(a, b), 2 * m * k * n, repeats) / 1e9
    return out


def gemm_gflops(dtype: str = "fp32", repeats: int = 5) -> float:
    """This machine's GEMM peak in `dtype`: the best over GEMM_SHAPES and both kernels (see `gemm_probe`)."""
    return max(gemm_probe(dtype, repeats).values())


def read_probe(repeats: int = 5, megabytes=READ_MEGABYTES, kernels=READ_KERNELS,
               rate: Callable = best_rate) -> dict[str, float]:
    """Memory read GB/s of every (kernel, size): fp32 sums (Eigen's threaded reduction, XLA's) and the matvec decoding
    runs (vector x matrix and matrix x vector), TensorFlow's kernels and XLA's, each reading `megabytes` per call.

    No copy kernel: each call would allocate a fresh output, and first-touch page faults, not the bus, would bound it.
    """
    out = {}
    for mb in megabytes:
        data = tf.random.normal([mb * 2**20 // 4])
        wide, tall = tf.reshape(data, [4096, -1]), tf.reshape(data, [-1, 4096])
        row, column = tf.random.normal([1, 4096]), tf.random.normal([4096, 1])
        for kernel in kernels:
            op, xla, _ = kernel.partition("_xla")
            fn = tf.function({"reduce_sum": lambda: tf.reduce_sum(data), "vecmat": lambda: tf.matmul(row, wide),
                              "matvec": lambda: tf.matmul(tall, column)}[op], jit_compile=bool(xla), autograph=False)
            out[f"{kernel} {mb} MB"] = rate(fn, mb * 2**20, repeats) / 1e9
    return out


def bandwidth_gbs(repeats: int = 5) -> float:
    """This machine's memory read bandwidth: the best over READ_KERNELS and READ_MEGABYTES (see `read_probe`).

    The ceiling for batch-1 decoding, which must read every weight once per token.
    """
    return max(read_probe(repeats).values())


def thread_settings(cpu: dict) -> list[int]:
    """Intra-op thread counts worth probing besides TensorFlow's default (one per logical CPU): one per physical
    core where SMT siblings share a core's FMA units. TensorFlow fixes its pools when it initialises, so another
    count needs a fresh process (`gemm_in_subprocess`); on a machine without SMT there is none to try."""
    cores, logical = cpu.get("physical_cores"), cpu.get("logical_cpus")
    return [cores] if cores and logical and cores < logical else []


def gemm_in_subprocess(threads: int, configs: dict[str, list[str]], repeats: int) -> dict[str, dict[str, float]]:
    """`gemm_probe` of `configs` ({dtype: ["xla [1024,256]x[256,50257]", ...]}) in a fresh Python with `threads`
    intra-op threads; {} if it fails (the in-process figures stand)."""
    done = subprocess.run([sys.executable, __file__, "--threads", str(threads), "--repeats", str(repeats),
                           "--configs", json.dumps(configs)], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    try:
        return json.loads(done.stdout.strip().splitlines()[-1])
    except (IndexError, ValueError):
        return {}


def _parse_config(name: str) -> tuple[str, tuple[int, int, int]]:
    kernel, shape = name.split(" ", 1)
    (m, k), (_, n) = (tuple(int(x) for x in part.strip("[]").split(",")) for part in shape.split("x"))
    return kernel, (m, k, n)


QUICK_GEMM_SHAPES = GEMM_SHAPES[:1]  # a smoke run checks the plumbing, not the machine
QUICK_READ_MEGABYTES = READ_MEGABYTES[:1]


def probes(repeats: int = 5, quick: bool = False) -> dict:
    """The run's references: "gemm_gflops" {"fp32", "bf16"} and "bandwidth_gbs" (peaks), "cpu" (`cpu_info`), and
    "probe_log", to which each call appends one entry: "gemm" {dtype: {configuration: GFLOP/s}}, "read"
    {configuration: GB/s}, the winners "gemm_best" {dtype: configuration} and "read_best", the intra-op thread
    counts tried, and the probe's seconds.
    """
    began = time.perf_counter()
    cpu = cpu_info()
    shapes, megabytes = (QUICK_GEMM_SHAPES, QUICK_READ_MEGABYTES) if quick else (GEMM_SHAPES, READ_MEGABYTES)
    gemm = {dtype: gemm_probe(dtype, repeats, shapes=shapes) for dtype in DTYPES}
    threads = {"default": tf.config.threading.get_intra_op_parallelism_threads() or os.cpu_count(), "tried": []}
    top = {dtype: sorted(rates, key=rates.get)[-2:] for dtype, rates in gemm.items()}
    for count in [] if quick else thread_settings(cpu):  # only the two best configurations per dtype: a fresh process costs seconds
        extra = gemm_in_subprocess(count, top, repeats)
        threads["tried"].append(count)
        for dtype, rates in extra.items():
            gemm[dtype].update({f"{name} @{count} threads": value for name, value in rates.items()})
    read = read_probe(repeats, megabytes=megabytes)
    entry = {"gemm": gemm, "gemm_best": {dtype: max(rates, key=rates.get) for dtype, rates in gemm.items()},
             "read": read, "read_best": max(read, key=read.get), "intra_op_threads": threads,
             "repeats": repeats, "seconds": time.perf_counter() - began}
    PROBE_LOG.append(entry)
    return {"machine": machine(), "cpu": cpu,
            "gemm_gflops": {dtype: rates[entry["gemm_best"][dtype]] for dtype, rates in gemm.items()},
            "bandwidth_gbs": read[entry["read_best"]], "probe_log": PROBE_LOG}


if __name__ == "__main__":  # the GEMM probe under another intra-op thread count: see `gemm_in_subprocess`
    import argparse

    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, required=True)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--configs", required=True, help='JSON {dtype: ["xla [M,K]x[K,N]", ...]}')
    args = parser.parse_args()
    tf.config.threading.set_intra_op_parallelism_threads(args.threads)  # before any op: TF has not initialised
    result = {}
    for dtype, names in json.loads(args.configs).items():
        result[dtype] = {}
        for name in names:
            kernel, shape = _parse_config(name)
            result[dtype].update(gemm_probe(dtype, args.repeats, shapes=[shape], kernels=[kernel]))
    print(json.dumps(result))
