"""What this machine computes fast, read from its flags (not timed, so a choice is the same on
every run). torch-free: the runner and the data check plan with it too."""

from pathlib import Path


def cpu_has_native_bf16() -> bool:
    """AVX512-BF16 or AMX: bf16 matmuls at 2.5x the fp32 rate here (bench/README.md); without
    them torch emulates bf16 and it is slower than fp32."""
    cpuinfo = Path("/proc/cpuinfo")
    flags = set(cpuinfo.read_text().split()) if cpuinfo.exists() else set()
    return bool({"avx512_bf16", "amx_bf16"} & flags)


def compute_dtype(device_type: str) -> str:
    """The dtype of frozen weights on a device ("cuda" or "cpu"), as a torch attribute name: bf16
    where the hardware multiplies it natively (CUDA, or a CPU with `cpu_has_native_bf16`), else
    fp32. The one rule the trainer, its benchmark and the engines follow."""
    return "bfloat16" if device_type == "cuda" or cpu_has_native_bf16() else "float32"
