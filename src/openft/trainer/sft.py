"""LoRA supervised fine-tuning of a chat model: the one training recipe.

Run as `python -m openft.trainer spec.json` (a `TrainSpec`, trainer/spec.py, where the recipe's
numbers are defined). The trainer knows nothing about HTTP or the database: a spec file comes in,
files come out, and progress goes to stdout as one JSON object per line (everything else, logs
and warnings, goes to stderr):

    {"type": "started", "total_steps": N, "n_examples": E, "n_epochs": K, "batch_size": B, "start_step": s}
    {"type": "metrics", "step": n, "total_steps": N, "epoch": e, "train_loss": x,
     "train_mean_token_accuracy": a, "tokens": t}          (+ valid_loss / valid_mean_token_accuracy
                                                              every `eval_every` steps, and
                                                              full_valid_loss / full_valid_mean_token_accuracy
                                                              on the last step, with a validation file)
    {"type": "checkpoint", "step": n, "epoch": e, "path": ".../checkpoints/step-n/adapter", "metrics": {...}}
    {"type": "done", "trained_tokens": T, "adapter_path": ".../adapter"}
    {"type": "error", "message": "..."}                    (then exit code 1)

`step` counts optimizer steps from 1; `epoch` counts from 1; `tokens` is the running total of
tokens processed (padding excluded) and `trained_tokens` the total over all epochs, which is
what OpenAI bills (every token of every example, times epochs).

The recipe:
- Labels come from `openft.data.labels.render_example` (loss on assistant replies with
  weight 1, their end-of-turn token included); examples are truncated to `max_length`.
- The base model is frozen, its weights in bf16 where the hardware has bf16 matmuls (CUDA, and
  CPUs with AVX512-BF16 or AMX: `hardware.compute_dtype`), else fp32; LoRA adapters (peft, the
  spec's r / alpha / dropout / target modules) and the optimizer state are fp32 (peft upcasts
  the adapters, and their inputs). The memory plan (`trainer/plan.py`, decided by the runner)
  may add gradient checkpointing, or load the base in 4-bit NF4 (QLoRA); `init_adapter` goes on
  training an earlier fine-tune's adapter (its LoRA config and weights) instead of a fresh one.
- AdamW (betas 0.9/0.999, no weight decay), gradient norm clipped to 1.0. Learning rate: linear
  warmup over the first `warmup_ratio` (10%) of steps, then linear decay towards 0 at the end:
  step s (0-based) of N with W warmup steps gets lr * (s+1)/(W+1) while s < W, then
  lr * (N-s)/(N-W), so the last step still learns.
- The loss is the mean cross-entropy over the trained tokens of a batch of `batch_size`
  examples; token accuracy is the share of trained tokens whose argmax prediction is right.
- Speed without changing what is learned: each epoch's order is a seeded shuffle, then examples
  are grouped by length within windows of 32 batches and the batches shuffled again, so a batch
  is padded only to its own longest example; the LM head (vocabulary-sized) and the loss run only
  on the positions that predict a trained token (`logits_to_keep` with a boolean mask).
- Determinism: `torch.manual_seed(seed)` before the adapters are created; the data order depends
  only on (seed, epoch). Same seed, same data, same thread count → the same loss curve on CPU
  (a fixed `threads`; otherwise the count follows the host's other busy processes, step by step).
- At the end of each epoch a checkpoint: the adapter (`save_pretrained`) plus `trainer_state.pt`
  (optimizer, scheduler, RNG, position). A run whose `output_dir/checkpoints` already holds one
  resumes from the latest, exactly where the uninterrupted run would have been.
"""

from __future__ import annotations

import importlib.util
import json
import math
import shutil
import sys
import time
import traceback
from dataclasses import asdict
from pathlib import Path

import torch
import torch.nn.functional as F

from openft.cores import CoreShare
from openft.data.labels import IGNORE_INDEX, RenderedExample, render_example
from openft.hardware import compute_dtype
from openft.models.facts import trusts_remote_code
from openft.trainer.ranks import Ranks
from openft.trainer.spec import EAGER_ATTENTION_ELEMENTS, TrainSpec, lora_config

MAX_GRAD_NORM = 1.0
GROUP_WINDOW = 32  # batches per length-grouping window


def main(argv: list[str]) -> int:
    events = sys.stdout  # stdout carries events only: anything else printed goes to stderr
    sys.stdout = sys.stderr

    def emit(event: dict) -> None:
        events.write(json.dumps(event) + "\n")
        events.flush()

    try:
        if len(argv) != 1:
            raise ValueError("usage: python -m openft.trainer spec.json")
        spec = TrainSpec.read(Path(argv[0]))
        if spec.method == "dpo":
            from openft.trainer.dpo import train_dpo

            train_dpo(spec, emit)
        elif spec.method == "supervised":
            train(spec, emit)
        else:
            raise ValueError(f"Unknown method {spec.method!r}: expected 'supervised' or 'dpo'")
        return 0
    except Exception as exc:
        traceback.print_exc()
        emit({"type": "error", "message": f"{type(exc).__name__}: {exc}"})
        return 1


def train(spec: TrainSpec, emit) -> None:
    # ---------------------------------------------------------------------------------------
    # config
    out_dir = Path(spec.output_dir)
    ckpt_dir = out_dir / "checkpoints"
    ranks = Ranks.from_environment()
    device = ranks.device()
    # this process's share of the host's cores, kept up to date between steps (openft/cores.py)
    cores = CoreShare(spec.cores_dir if device.type == "cpu" else None, "trainer", spec.threads)
    cores.busy(True)
    torch.set_num_threads(cores.threads())
    if not ranks.leader:
        emit = _silent  # one event stream per job: the leader's
    torch.manual_seed(spec.seed)

    tokenizer, model, pad_id = load_policy(spec, device)
    trained = ranks.wrap(model)  # what the loop calls: the model itself, or its DDP wrapper

    # ---------------------------------------------------------------------------------------
    # data
    train_set = load_examples(tokenizer, spec.training_file, spec.max_length, "training_file")
    valid_set = []
    if spec.validation_file:
        valid_set = load_examples(tokenizer, spec.validation_file, spec.max_length, "validation_file")
    n_epochs, batch_size = spec.n_epochs, spec.batch_size
    steps_per_epoch = math.ceil(len(train_set) / batch_size)
    total_steps = steps_per_epoch * n_epochs
    epoch_tokens = sum(len(ex.input_ids) for ex in train_set)
    eval_every = spec.eval_every or max(1, total_steps // 10)

    params, optimizer, scheduler, warmup = optimizer_and_schedule(model, spec, total_steps)

    # ---------------------------------------------------------------------------------------
    # resume from the latest checkpoint, if a previous run left one
    step, start_epoch, tokens = 0, 0, 0
    if (latest := latest_checkpoint(ckpt_dir)) is not None:
        step, start_epoch, tokens = resume(latest, model, optimizer, scheduler, total_steps, device)
        print(f"resuming from {latest} (step {step}, epoch {start_epoch})", file=sys.stderr)
    emit(
        {
            "type": "started",
            "total_steps": total_steps,
            "n_examples": len(train_set),
            "n_epochs": n_epochs,
            "batch_size": batch_size,
            "start_step": step,
        }
    )

    # ---------------------------------------------------------------------------------------
    # loop
    lengths = [len(ex.input_ids) for ex in train_set]
    t0, tokens0 = time.perf_counter(), tokens
    for epoch in range(start_epoch, n_epochs):
        for batch_ids in epoch_batches(lengths, batch_size, spec.seed, epoch):
            if (threads := cores.threads()) != torch.get_num_threads():
                torch.set_num_threads(threads)
            trained.train()
            share, weight = ranks.share(batch_ids)
            input_ids, attention_mask, labels = collate([train_set[i] for i in share], pad_id, device)
            use_attention_for(model, input_ids.shape, device)
            loss_sum, correct, n_trained = batch_loss(trained, input_ids, attention_mask, labels)
            totals = ranks.sum(
                weight
                * torch.tensor(
                    [loss_sum.item(), correct.item(), n_trained, attention_mask.sum().item()],
                    dtype=torch.float64,
                    device=device,
                )
            )
            # DDP averages gradients over ranks: scaling by ranks.world makes the update the
            # gradient of the whole batch's mean loss, as one process would compute it
            (loss_sum * weight * ranks.world / totals[2]).backward()
            torch.nn.utils.clip_grad_norm_(params, MAX_GRAD_NORM)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            tokens += int(totals[3])

            metrics = {
                "type": "metrics",
                "step": step,
                "total_steps": total_steps,
                "epoch": epoch + 1,
                "train_loss": totals[0].item() / totals[2].item(),
                "train_mean_token_accuracy": totals[1].item() / totals[2].item(),
                "tokens": tokens,
            }
            if valid_set and (step % eval_every == 0 or step == total_steps):
                metrics["valid_loss"], metrics["valid_mean_token_accuracy"] = evaluate(
                    model, valid_set[: spec.eval_examples], batch_size, pad_id, device
                )
            if valid_set and step == total_steps:
                metrics["full_valid_loss"], metrics["full_valid_mean_token_accuracy"] = evaluate(
                    model, valid_set, batch_size, pad_id, device
                )
            emit(metrics)
            print(
                f"step {step}/{total_steps} loss {metrics['train_loss']:.4f} "
                f"{(tokens - tokens0) / (time.perf_counter() - t0):.0f} tok/s",
                file=sys.stderr,
            )

        position = {"step": step, "epoch": epoch + 1, "tokens": tokens, "total_steps": total_steps}
        checkpoint(ckpt_dir, position, metrics, model, optimizer, scheduler, device, ranks, emit)

    # ---------------------------------------------------------------------------------------
    # save: the adapter, with the resolved config next to it
    adapter_dir = out_dir / "adapter"
    if ranks.leader:
        save_adapter(adapter_dir, model, spec, total_steps, warmup, eval_every, len(train_set), ranks.world)
    ranks.close()
    cores.close()
    emit({"type": "done", "trained_tokens": epoch_tokens * n_epochs, "adapter_path": str(adapter_dir)})


# -------------------------------------------------------------------------------------------
# helpers


def _silent(event: dict) -> None:
    pass


def load_policy(spec: TrainSpec, device: torch.device):
    """(tokenizer, model, pad id): the frozen base (as the memory plan says) with the LoRA
    adapters trained, fresh or an earlier fine-tune's (`init_adapter`)."""
    from peft import PeftModel, get_peft_model
    from transformers import AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # stderr is a log file, not a terminal
    remote_code = trusts_remote_code(Path(spec.base_model_path))  # added with --trust-remote-code
    tokenizer = AutoTokenizer.from_pretrained(spec.base_model_path, trust_remote_code=remote_code)
    model = load_base(spec, device, remote_code)
    if spec.init_adapter:
        model = PeftModel.from_pretrained(model, spec.init_adapter, is_trainable=True)
    else:
        model = get_peft_model(model, lora_config(spec.lora))
    model.config.use_cache = False
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    return tokenizer, model, pad_id


def optimizer_and_schedule(model, spec: TrainSpec, total_steps: int):
    """(trained parameters, AdamW, the warmup-then-decay schedule, warmup steps): the recipe's."""
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=spec.learning_rate, betas=(0.9, 0.999), weight_decay=0.0)
    warmup = round(spec.warmup_ratio * total_steps)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: (s + 1) / (warmup + 1) if s < warmup else (total_steps - s) / (total_steps - warmup)
    )
    return params, optimizer, scheduler, warmup


def save_adapter(
    adapter_dir: Path, model, spec: TrainSpec, total_steps: int, warmup: int, eval_every: int, n: int, processes: int
) -> None:
    """The trained adapter, with the resolved config it was trained with next to it."""
    model.save_pretrained(adapter_dir)
    config = {
        **asdict(spec),
        "total_steps": total_steps,
        "warmup_steps": warmup,
        "eval_every": eval_every,
        "n_examples": n,
        "schedule": "linear warmup, then linear decay",
        "optimizer": "adamw",
        "max_grad_norm": MAX_GRAD_NORM,
        "processes": processes,
    }
    (adapter_dir / "training_config.json").write_text(json.dumps(config, indent=2))


def use_attention_for(model, shape: torch.Size, device: torch.device) -> None:
    """On the CPU, plain (eager) attention for small batches, SDPA for large ones. Measured on
    SmolLM2-135M in bf16, one training step: eager ran 18% faster than SDPA's CPU kernel at
    8 x 70-162 tokens and 6% at 8 x 256, but 22% slower at 8 x 512, where its rows x T^2
    probabilities (kept for the backward pass) outgrow the caches. Either computes the same
    attention; CUDA always uses SDPA."""
    rows, width = shape
    small = device.type == "cpu" and rows * width * width <= EAGER_ATTENTION_ELEMENTS
    wanted = "eager" if small else "sdpa"
    base = model.get_base_model()
    if base.config._attn_implementation != wanted:  # setting it walks every module: only on a change
        base.set_attn_implementation(wanted)


def load_base(spec: TrainSpec, device: torch.device, remote_code: bool):
    """The frozen base model as the spec's memory plan says (trainer/plan.py): in its dtype, or,
    for QLoRA, its linear layers in 4-bit NF4 (bf16 compute, the rest upcast to fp32 by peft's
    `prepare_model_for_kbit_training`); with gradient checkpointing if planned. Non-reentrant
    checkpointing (transformers' default) passes gradients to the adapters of the first layer
    without peft's input-grad hook, which only the reentrant kind needs."""
    from transformers import AutoModelForCausalLM

    if spec.quantization == "nf4":
        if device.type != "cuda" or importlib.util.find_spec("bitsandbytes") is None:
            raise RuntimeError("QLoRA needs a CUDA device and bitsandbytes on this host: pip install bitsandbytes")
        from peft import prepare_model_for_kbit_training
        from transformers import BitsAndBytesConfig

        quantization = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=torch.bfloat16,
        )
        model = AutoModelForCausalLM.from_pretrained(
            spec.base_model_path,
            quantization_config=quantization,
            dtype=torch.bfloat16,
            device_map={"": device},
            trust_remote_code=remote_code,
        )
        return prepare_model_for_kbit_training(
            model,
            use_gradient_checkpointing=spec.gradient_checkpointing,
            gradient_checkpointing_kwargs={"use_reentrant": False},
        )
    if spec.quantization != "none":
        raise ValueError(f"Unknown quantization {spec.quantization!r}: expected 'none' or 'nf4'")
    model = AutoModelForCausalLM.from_pretrained(
        spec.base_model_path, dtype=base_dtype(spec, device), trust_remote_code=remote_code
    ).to(device)
    if spec.gradient_checkpointing:
        model.activation_checkpointing_enable()
    return model


def base_dtype(spec: TrainSpec, device: torch.device) -> torch.dtype:
    """The frozen base's dtype: the spec's, or by default the hardware's (`hardware.compute_dtype`:
    bf16 where it multiplies bf16 natively, else fp32)."""
    return getattr(torch, compute_dtype(device.type) if spec.base_dtype == "auto" else spec.base_dtype)


def load_examples(tokenizer, path: str, max_length: int, param: str) -> list[RenderedExample]:
    """Read a JSONL file (one object per non-blank line, validated upstream) and render it.
    Examples left with no trained token (e.g. truncated before the first reply) are dropped."""
    examples = []
    with open(path, encoding="utf-8") as f:
        for line_no, line in enumerate(f, 1):
            if not line.strip():
                continue
            ex = render_example(tokenizer, json.loads(line), max_length)
            if all(label == IGNORE_INDEX for label in ex.labels[1:]):
                print(
                    f"warning: {param} line {line_no} has no trained token within max_length {max_length}; skipped",
                    file=sys.stderr,
                )
                continue
            examples.append(ex)
    if not examples:
        raise ValueError(f"{param} has no example with a trained assistant token")
    return examples


def epoch_batches(lengths: list[int], batch_size: int, seed: int, epoch: int) -> list[list[int]]:
    """One epoch's batches of example indices: a seeded shuffle, then length-grouped within
    windows of GROUP_WINDOW batches, then the batches shuffled. Depends only on (seed, epoch)."""
    g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    order = torch.randperm(len(lengths), generator=g).tolist()
    window = batch_size * GROUP_WINDOW
    batches = []
    for w in range(0, len(order), window):
        chunk = sorted(order[w : w + window], key=lambda i: -lengths[i])
        batches += [chunk[b : b + batch_size] for b in range(0, len(chunk), batch_size)]
    return [batches[i] for i in torch.randperm(len(batches), generator=g).tolist()]


def collate(examples: list[RenderedExample], pad_id: int, device):
    """Right-pad a batch to its longest sequence: (input_ids, attention_mask, labels), a row per
    sequence (an example whose template rewrites earlier turns has one per reply, labels.py)."""
    rows = [sequence for ex in examples for sequence in ex.sequences()]
    width = max(len(ids) for ids, _ in rows)
    input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
    labels = torch.full((len(rows), width), IGNORE_INDEX, dtype=torch.long)
    for row, (ids, row_labels) in enumerate(rows):
        n = len(ids)
        input_ids[row, :n] = torch.tensor(ids)
        attention_mask[row, :n] = 1
        labels[row, :n] = torch.tensor(row_labels)
    return input_ids.to(device), attention_mask.to(device), labels.to(device)


def batch_loss(model, input_ids, attention_mask, labels):
    """Summed cross-entropy, correct argmax count and trained-token count of a batch. Logits are
    computed only where the next token is trained: position t predicts labels[t+1]."""
    keep = torch.zeros_like(labels, dtype=torch.bool)
    keep[:, :-1] = labels[:, 1:] != IGNORE_INDEX
    targets = labels[:, 1:][keep[:, :-1]]
    logits = model(input_ids=input_ids, attention_mask=attention_mask, logits_to_keep=keep).logits.float()
    loss_sum = F.cross_entropy(logits, targets, reduction="sum")
    correct = (logits.argmax(-1) == targets).sum()
    return loss_sum, correct, targets.numel()


@torch.no_grad()
def evaluate(model, examples: list[RenderedExample], batch_size: int, pad_id: int, device):
    """Mean loss and token accuracy over all trained tokens of `examples`."""
    model.eval()
    loss, correct, n = 0.0, 0, 0
    for b in range(0, len(examples), batch_size):
        batch = collate(examples[b : b + batch_size], pad_id, device)
        batch_loss_sum, batch_correct, batch_n = batch_loss(model, *batch)
        loss, correct, n = loss + batch_loss_sum.item(), correct + batch_correct.item(), n + batch_n
    return loss / n, correct / n


def checkpoint(ckpt_dir: Path, position: dict, metrics: dict, model, optimizer, scheduler, device, ranks, emit) -> None:
    """The end of an epoch: a checkpoint (adapter + everything needed to resume) written by the
    leader, then its event, with the epoch's last metrics."""
    path = ckpt_dir / f"step-{position['step']}"
    if ranks.leader:
        save_checkpoint(path, model, optimizer, scheduler, position, device)
    ranks.barrier()
    emit(
        {
            "type": "checkpoint",
            "step": position["step"],
            "epoch": position["epoch"],
            "path": str(path / "adapter"),
            "metrics": {k: v for k, v in metrics.items() if k not in ("type", "total_steps")},
        }
    )


def save_checkpoint(path: Path, model, optimizer, scheduler, position: dict, device: torch.device) -> None:
    """The adapter plus `trainer_state.pt` (`position`: step, epoch, tokens, total_steps; and the
    optimizer, scheduler and RNG states), written aside and renamed: a checkpoint directory is
    complete or absent."""
    tmp = path.with_name(f".{path.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp / "adapter")
    rng = {"torch": torch.get_rng_state(), "cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None}
    state = {**position, "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "rng": rng}
    torch.save(state, tmp / "trainer_state.pt")
    shutil.rmtree(path, ignore_errors=True)
    tmp.rename(path)


def resume(
    checkpoint: Path, model, optimizer, scheduler, total_steps: int, device: torch.device
) -> tuple[int, int, int]:
    """Load what `save_checkpoint` wrote into the model, optimizer, scheduler and RNG: the run then
    goes on exactly where the uninterrupted one was. Returns (step, epoch, tokens) done."""
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    state = torch.load(checkpoint / "trainer_state.pt", weights_only=True)
    if state["total_steps"] != total_steps:
        raise ValueError(
            f"Cannot resume from {checkpoint}: it was written for {state['total_steps']} steps, "
            f"this spec gives {total_steps}. Remove {checkpoint.parent} to start over."
        )
    set_peft_model_state_dict(
        model, load_file(checkpoint / "adapter" / "adapter_model.safetensors", device=str(device))
    )
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    torch.set_rng_state(state["rng"]["torch"])
    if device.type == "cuda" and state["rng"]["cuda"] is not None:
        torch.cuda.set_rng_state(state["rng"]["cuda"], device)
    return state["step"], state["epoch"], state["tokens"]


def latest_checkpoint(ckpt_dir: Path) -> Path | None:
    """The complete checkpoint (`step-N` with a trainer_state.pt) with the highest N, if any."""
    done = [p for p in ckpt_dir.glob("step-*") if (p / "trainer_state.pt").exists()]
    return max(done, key=lambda p: int(p.name.removeprefix("step-")), default=None)
