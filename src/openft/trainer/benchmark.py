"""This machine's LoRA training speed, in tokens per second, timed on a synthetic batch.

A few steps of the trainer's own recipe: the base model on the trainer's device and dtype
(`hardware.compute_dtype`), the spec's LoRA adapters (`trainer.spec.lora_config`), the
attention the trainer picks for the batch's shape, then forward, loss (`sft.batch_loss`),
backward, gradient clipping and an AdamW step, on the trainer's thread count. It takes a few
seconds; `runner/throughput.py` caches the result per host and base model.
"""

from __future__ import annotations

import time
import warnings
from pathlib import Path

import torch

from openft.data.labels import IGNORE_INDEX
from openft.hardware import compute_dtype
from openft.models.facts import trusts_remote_code
from openft.trainer.sft import MAX_GRAD_NORM, batch_loss, use_attention_for
from openft.trainer.spec import Lora, lora_config

BENCH_BATCH = (1, 128)  # (examples, tokens per example): small, so that it takes seconds on CPU
BENCH_TRAINED_SHARE = 3  # 1 token in 3 carries loss, like a short chat's assistant reply
BENCH_SECONDS = 2.0  # time steps until this much has passed (after one warmup step)
BENCH_MIN_STEPS = 1


def measure_tokens_per_second(model_path: Path, threads: int | None) -> float:
    """Time the trainer's recipe (LoRA forward + backward + AdamW step) on a synthetic batch."""
    from peft import get_peft_model
    from transformers import AutoModelForCausalLM
    from transformers.utils import logging as hf_logging

    if threads:
        torch.set_num_threads(threads)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dtype = getattr(torch, compute_dtype(device.type))
    hf_logging.disable_progress_bar()  # a CLI report, not a download: no "Loading weights" bar
    with warnings.catch_warnings():  # peft's deprecation notices are not the user's concern here
        warnings.simplefilter("ignore", FutureWarning)
        model = AutoModelForCausalLM.from_pretrained(
            model_path, dtype=dtype, trust_remote_code=trusts_remote_code(model_path)
        ).to(device)
        model = get_peft_model(model, lora_config(Lora()))
    model.config.use_cache = False
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-4)
    generator = torch.Generator().manual_seed(0)
    input_ids = torch.randint(0, model.config.vocab_size, BENCH_BATCH, generator=generator).to(device)
    attention_mask = torch.ones_like(input_ids)
    labels = input_ids.clone()
    labels[:, : -(input_ids.shape[1] // BENCH_TRAINED_SHARE)] = IGNORE_INDEX
    use_attention_for(model, input_ids.shape, device)

    def step() -> None:
        loss_sum, _, n_trained = batch_loss(model, input_ids, attention_mask, labels)
        (loss_sum / n_trained).backward()
        torch.nn.utils.clip_grad_norm_(params, MAX_GRAD_NORM)
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
