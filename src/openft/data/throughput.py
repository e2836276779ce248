"""This machine's LoRA training speed, in tokens per second, and the ETA it gives a job.

The speed is measured once per base model and cached in `<data dir>/throughput.json`:

    {"SmolLM2-135M-Instruct": {"tokens_per_second": 812.4, "source": "benchmark",
                               "benchmark_tokens_per_second": 812.4,
                               "job_tokens": 0, "job_seconds": 0.0}}

The benchmark (`measure_tokens_per_second`) times a few training steps of the trainer's recipe
on a synthetic batch: the base model on the trainer's device and dtype, LoRA adapters, forward,
backward and an AdamW step, on the trainer's thread count. It takes a few seconds. Finished jobs
then report their real numbers through `record_job_throughput`; once one has, the speed is the
jobs' total tokens over their total seconds (real data, real batch shapes, real overheads), and
the benchmark is kept only as a record.

torch and transformers are imported only inside the benchmark.
"""

from __future__ import annotations

import json
import os
import time
import warnings
from pathlib import Path

CACHE_FILE = "throughput.json"
BENCH_BATCH = (1, 128)  # (examples, tokens per example): small, so that it takes seconds on CPU
BENCH_TRAINED_SHARE = 3  # 1 token in 3 carries loss, like a short chat's assistant reply
BENCH_SECONDS = 2.0  # time steps until this much has passed (after one warmup step)
BENCH_MIN_STEPS = 1


def eta_seconds(data_dir: Path, model: str, billed_tokens: int) -> float | None:
    """Seconds to train `billed_tokens` (tokens x epochs) here; None until the speed is known."""
    entry = cached(data_dir, model)
    return billed_tokens / entry["tokens_per_second"] if entry else None


def cached(data_dir: Path, model: str) -> dict | None:
    """The cache entry of `model` (`tokens_per_second`, `source`, ...), or None if never measured."""
    return _read(data_dir).get(model)


def ensure_measured(data_dir: Path, model: str, model_path: Path, threads: int | None) -> dict:
    """The cache entry of `model`, measuring it first if this machine has never trained it."""
    if cached(data_dir, model) is None:
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


def measure_tokens_per_second(model_path: Path, threads: int | None) -> float:
    """Time the trainer's recipe (LoRA forward + backward + AdamW step) on a synthetic batch."""
    import torch
    from peft import get_peft_model
    from transformers import AutoModelForCausalLM
    from transformers.utils import logging as hf_logging

    from openft.data.labels import IGNORE_INDEX
    from openft.trainer.sft import batch_loss
    from openft.trainer.spec import Lora, lora_config

    if threads:
        torch.set_num_threads(threads)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    hf_logging.disable_progress_bar()  # a CLI report, not a download: no "Loading weights" bar
    with warnings.catch_warnings():  # peft's deprecation notices are not the user's concern here
        warnings.simplefilter("ignore", FutureWarning)
        model = AutoModelForCausalLM.from_pretrained(model_path, dtype=dtype).to(device)
        model = get_peft_model(model, lora_config(Lora()))
    model.config.use_cache = False
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    generator = torch.Generator().manual_seed(0)
    input_ids = torch.randint(0, model.config.vocab_size, BENCH_BATCH, generator=generator).to(device)
    attention_mask = torch.ones_like(input_ids)
    labels = input_ids.clone()
    labels[:, : -(input_ids.shape[1] // BENCH_TRAINED_SHARE)] = IGNORE_INDEX

    def step() -> None:
        loss_sum, _, n_trained = batch_loss(model, input_ids, attention_mask, labels)
        (loss_sum / n_trained).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.synchronize()

    step()  # warmup: allocations, kernel selection
    steps, start = 0, time.perf_counter()
    while steps < BENCH_MIN_STEPS or time.perf_counter() - start < BENCH_SECONDS:
        step()
        steps += 1
    return steps * input_ids.numel() / (time.perf_counter() - start)


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
