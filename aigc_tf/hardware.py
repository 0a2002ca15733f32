"""What this CPU can do fast, read from `/proc/cpuinfo` instead of assumed.

bfloat16 halves the bytes a decoder reads per token, but only a CPU with native bf16 dot products (`avx512_bf16`
on x86, `amx_bf16` on newer Xeons, `bf16` on Arm) computes in it at full speed; elsewhere bf16 is emulated and a
bf16 matmul runs slower than the fp32 one it replaces (bench/RESULTS.md has the side-by-side GEMM timing).
`precision="auto"` therefore picks bf16 only where the flag is present (and only for XLA-compiled decoding, see
`resolve_precision`).
"""

from __future__ import annotations

import functools

PRECISIONS = ("fp32", "bf16")  # the names every `precision` argument and `--precision` flag takes
PRECISION_CHOICES = ("auto",) + PRECISIONS  # exports and decoding may let the CPU decide
# Training: the layers compute in 16 bits and keep float32 variables. fp16 is the GPU's choice (tensor cores) and
# needs loss scaling; a CPU has no fast float16 matmul, so there it is for checking the GPU path's arithmetic.
TRAINING_PRECISIONS = PRECISIONS + ("fp16",)
MIXED_POLICIES = {"fp32": "float32", "bf16": "mixed_bfloat16", "fp16": "mixed_float16"}
WEIGHT_DTYPES = {"fp32": "float32", "bf16": "bfloat16"}  # decoding: the weights themselves, half the bytes read
BF16_FLAGS = ("avx512_bf16", "amx_bf16", "bf16")


@functools.lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    """The first CPU's feature flags (`flags` on x86, `Features` on Arm); empty where /proc/cpuinfo is missing."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() in ("flags", "Features"):
                    return frozenset(value.split())
    except OSError:
        pass
    return frozenset()


def native_bf16() -> bool:
    return any(flag in cpu_flags() for flag in BF16_FLAGS)


def resolve_precision(precision: str, compiled: bool = True) -> str:
    """"auto" -> "bf16" on a CPU with native bf16 dot products when the decoder is XLA-compiled, else "fp32";
    "fp32" and "bf16" pass through.

    Without XLA (`compiled=False`, what a stock model server runs) "auto" stays fp32 on every CPU: there the fp32
    matmuls fuse with their bias into one oneDNN op, and bf16 decoding measured no faster (bench/RESULTS.md,
    `bf16_no_xla` against `fp32_no_xla`).
    """
    if precision not in PRECISION_CHOICES:
        raise ValueError(f"precision must be one of {', '.join(PRECISION_CHOICES)}, got {precision!r}")
    if precision == "auto":
        return "bf16" if compiled and native_bf16() else "fp32"
    return precision


def describe() -> str:
    """One line for reports: whether bf16 is native here, and the flag that says so."""
    found = [flag for flag in BF16_FLAGS if flag in cpu_flags()]
    return f"bf16 native ({found[0]})" if found else "bf16 emulated (no avx512_bf16/amx_bf16/bf16 flag)"
