"""What this machine computes fast, read from its flags (not timed, so a choice is the same on
every run), and what it holds: its CPU's RAM, its CUDA devices' memory. torch-free: the runner
and the data check plan with it too (CUDA is asked of torch in a child process)."""

import importlib.util
import json
import os
import platform
import re
import subprocess
import sys
from pathlib import Path


def cpu_has_native_bf16() -> bool:
    """AVX512-BF16 or AMX: bf16 matmuls at 2.5x the fp32 rate here (bench/README.md); without
    them torch emulates bf16 and it is slower than fp32."""
    cpuinfo = Path("/proc/cpuinfo")
    flags = set(cpuinfo.read_text().split()) if cpuinfo.exists() else set()
    return bool({"avx512_bf16", "amx_bf16"} & flags)


def compute_dtype(device_type: str, setting: str = "auto") -> str:
    """The dtype of frozen weights on a device ("cuda" or "cpu"), as a torch attribute name: the
    setting (`OPENFT_COMPUTE_DTYPE`) unless it is "auto", else bf16 where the hardware multiplies
    it natively (CUDA, or a CPU with `cpu_has_native_bf16`), else fp32. The one rule the trainer,
    its benchmark and the engines follow."""
    if setting != "auto":
        return setting
    return "bfloat16" if device_type == "cuda" or cpu_has_native_bf16() else "float32"


def cpu_name() -> str:
    """The CPU's model name, as /proc/cpuinfo gives it."""
    cpuinfo = Path("/proc/cpuinfo")
    for line in cpuinfo.read_text().splitlines() if cpuinfo.exists() else []:
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "CPU"


def cpu_memory() -> int:
    """Bytes of RAM this process's processes may use: the machine's, or its cgroup's limit if lower
    (a container's)."""
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    for limit in (Path("/sys/fs/cgroup/memory.max"), Path("/sys/fs/cgroup/memory/memory.limit_in_bytes")):
        try:
            memory = min(memory, int(limit.read_text().strip()))
        except (OSError, ValueError):  # absent, or "max": no limit
            continue
    return memory


# Run in a child: the caller (a worker, the data check) does not load torch for this.
_CUDA_PROBE = (
    "import json, torch\n"
    "gpus = [torch.cuda.get_device_properties(i) for i in range(torch.cuda.device_count())]\n"
    "print(json.dumps([[gpu.name, gpu.total_memory] for gpu in gpus]))\n"
)


def _torch_built_with_cuda() -> bool:
    """Whether the installed torch was built for CUDA (or ROCm), read from its version file
    without importing it: a CPU build (`cuda = None`) sees no device, and asking it costs a
    second."""
    spec = importlib.util.find_spec("torch")
    if spec is None or not spec.submodule_search_locations:
        return False
    version = Path(next(iter(spec.submodule_search_locations))) / "version.py"
    try:
        text = version.read_text()
    except OSError:
        return True  # unknown: ask torch
    return not all(re.search(rf"^{name}\b[^=\n]*=\s*None\s*$", text, re.MULTILINE) for name in ("cuda", "hip"))


def cuda_devices() -> list[tuple[str, int]]:
    """(name, bytes of memory) of each CUDA device the trainer would see: torch, asked in a child
    process with this one's environment (CUDA_VISIBLE_DEVICES included). Empty without CUDA."""
    if not _torch_built_with_cuda():
        return []
    try:
        done = subprocess.run([sys.executable, "-c", _CUDA_PROBE], capture_output=True, text=True, timeout=300)
        return [(name, memory) for name, memory in json.loads(done.stdout.strip().splitlines()[-1])]
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        return []
