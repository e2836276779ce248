"""This host's LoRA training speed per base model, in tokens per second: what an ETA divides by.

The speed is cached in `<data dir>/throughput.json`:

    {"SmolLM2-135M-Instruct": {"tokens_per_second": 812.4, "source": "benchmark",
                               "benchmark_tokens_per_second": 812.4,
                               "job_tokens": 0, "job_seconds": 0.0}}

It starts as a benchmark of the trainer's recipe (`trainer/benchmark.py`, a few seconds, run by
`ensure_measured` in the process that asks: `openft data check`). Finished jobs then report
their real numbers through `record_job_throughput` (the worker); once one has, the speed is the
jobs' total tokens over their total seconds (real data, real batch shapes, real overheads), and
the benchmark is kept only as a record.

torch is imported only by the benchmark: the worker records speeds without it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

CACHE_FILE = "throughput.json"


def cached(data_dir: Path, model: str) -> dict | None:
    """The cache entry of `model` (`tokens_per_second`, `source`, ...), or None if never measured."""
    return _read(data_dir).get(model)


def ensure_measured(data_dir: Path, model: str, model_path: Path, threads: int | None) -> dict:
    """The cache entry of `model`, benchmarking it first if this host has never trained it."""
    if cached(data_dir, model) is None:
        from openft.trainer.benchmark import measure_tokens_per_second

        speed = measure_tokens_per_second(model_path, threads)
        _update(data_dir, model, benchmark_tokens_per_second=speed)
    return cached(data_dir, model)


def record_job_throughput(data_dir: Path, model: str, tokens: int, seconds: float) -> None:
    """Fold a finished job's real speed into the cache (called by the worker): `tokens` it
    trained (the trainer's `trained_tokens`) in `seconds` of training (not queueing or loading)."""
    if tokens <= 0 or seconds <= 0:
        return
    entry = _read(data_dir).get(model, {})
    _update(
        data_dir,
        model,
        job_tokens=entry.get("job_tokens", 0) + tokens,
        job_seconds=entry.get("job_seconds", 0.0) + seconds,
    )


# ---------------------------------------------------------------------------------------------
# the cache file


def _read(data_dir: Path) -> dict:
    try:
        return json.loads((Path(data_dir) / CACHE_FILE).read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return {}  # never measured, or a torn file: measure again


def _update(data_dir: Path, model: str, **fields) -> None:
    cache = _read(data_dir)
    entry = {"job_tokens": 0, "job_seconds": 0.0, **cache.get(model, {}), **fields}
    if entry["job_seconds"] > 0:
        entry["tokens_per_second"] = entry["job_tokens"] / entry["job_seconds"]
        entry["source"] = "jobs"
    else:
        entry["tokens_per_second"] = entry["benchmark_tokens_per_second"]
        entry["source"] = "benchmark"
    cache[model] = entry
    path = Path(data_dir) / CACHE_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{CACHE_FILE}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(cache, indent=2), encoding="utf-8")
    tmp.replace(path)  # readers see the old file or the new one, never half of one
