import pytest

from aigc_tf import hardware


@pytest.mark.parametrize("flags,expected", [({"avx2", "avx512f", "avx512_bf16"}, "bf16"),
                                            ({"avx2", "fma"}, "fp32"),  # AVX2-only EPYC: bf16 emulated
                                            ({"fp", "asimd", "bf16"}, "bf16"),  # Arm
                                            (set(), "fp32")])
def test_auto_precision_follows_the_cpu_flags(monkeypatch, flags, expected):
    monkeypatch.setattr(hardware, "cpu_flags", lambda: frozenset(flags))
    assert hardware.resolve_precision("auto") == expected
    assert hardware.resolve_precision("auto", compiled=False) == "fp32"  # bf16 pays only under XLA
    assert hardware.resolve_precision("fp32") == "fp32" and hardware.resolve_precision("bf16") == "bf16"
    assert ("native" in hardware.describe()) == (expected == "bf16")


def test_unknown_precision_is_refused():
    with pytest.raises(ValueError, match="auto, fp32, bf16"):
        hardware.resolve_precision("fp16")
