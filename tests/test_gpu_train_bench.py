"""bench/gpu_train_bench.py runs end to end on the CPU with toy shapes (`--tiny`), so that the
session that has a GPU runs a script known to work: every run prints a figure, or a reason it
cannot happen here (QLoRA without CUDA and bitsandbytes; TRL when it is not installed)."""

import importlib.util
import subprocess
import sys

from tests.helpers import REPO


def test_the_gpu_benchmark_runs_on_toy_shapes():
    done = subprocess.run(
        [sys.executable, str(REPO / "bench" / "gpu_train_bench.py"), "--tiny", "--steps", "3"],
        capture_output=True,
        text=True,
        timeout=1500,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    lines = {line.split(":")[0].strip(): line for line in done.stdout.splitlines() if ": " in line}
    for run in ("qwen2.5-1.5b openft plan", "llama-3-8b openft bf16"):
        assert "tokens/s" in lines[run] and "peak" in lines[run] and "MFU" in lines[run], done.stdout
    assert "skipped: QLoRA needs a CUDA device" in lines["llama-3-8b openft qlora"]
    for run in ("qwen2.5-1.5b trl bf16", "llama-3-8b trl bf16"):
        expected = "tokens/s" if importlib.util.find_spec("trl") else "skipped: TRL is not installed"
        assert expected in lines[run], done.stdout
