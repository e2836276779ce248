"""Preference fine-tuning: DPO with an SFT term on the preferred reply (RPO), on LoRA adapters.

`python -m openft.trainer spec.json` runs this for a spec with `method: "dpo"`; everything else is
trainer/sft.py's recipe (the model load and memory plan, AdamW and its warmup-then-decay schedule,
gradient clipping, the seeded length-grouped batches, checkpoints per epoch, resume, DDP ranks,
the event stream). The events are sft.py's, with the same keys, and these added:

    metrics:    train_sft_loss, train_rewards_chosen, train_rewards_rejected,
                train_rewards_margins, train_rewards_accuracies   (+ valid_ / full_valid_ ones)

TRL's `rewards/chosen`, `rewards/rejected`, `rewards/margins`, `rewards/accuracies`, named as
openft's other keys are. `train_loss` is the DPO loss, `train_mean_token_accuracy` the argmax
accuracy on the preferred replies' tokens (TRL's `mean_token_accuracy`).

The data: each line is a pair (`openft.data.preference`): the input's conversation ending with the
preferred reply ("chosen"), and with the other ("rejected"), labelled by the one label path, so
only the final reply carries loss. A pair's log-probability under a model is the sum of the
log-probabilities of its reply's trained tokens (the reply and its end-of-turn token).

The loss of a batch of B pairs, for policy π and reference π_ref (mean over the pairs, and over
the preferred replies' tokens for the SFT term):

    r_c = β (log π(c) - log π_ref(c)),  r_r = β (log π(r) - log π_ref(r))   (the implicit rewards)
    loss = mean(-log σ(r_c - r_r)) + sft_weight · mean over c's tokens of -log π(token)

The SFT term is there because of what plain DPO does to pairs that share most of their tokens
(data/hyperparams.py has the measurements): it lowers both replies until greedy decoding loses
the answer. TRL writes this loss as `loss_type=["sigmoid", "sft"]`.

The reference is the model before the first step: the base with a fresh adapter (whose LoRA B is
zero, so it computes the base), or an `ft:` model's adapter as it was loaded, which makes that
supervised model the reference, as OpenAI's SFT-then-DPO flow wants. It never changes, so its
log-probabilities are computed once, before training (and again before a resumed run loads its
checkpoint): no second model and no reference forward per step. Each step runs the chosen and
rejected rows of its pairs through the policy as one batch of 2B rows.

The reference must be computed with the numerics of the policy's forward pass, or the difference
is a bias in every implicit reward (in bf16, a pair's log-probability depends on how wide its
batch is padded and on the attention kernel: at step 1 the loss was 0.7068, not log 2). So the
batches are the same in every epoch, only their order reshuffled, and each pair's reference is
computed in the very batch (this process's share of it, under DDP) and with the attention the
step will use; validation batches are fixed likewise. LoRA dropout is off: its noise would be a
term in every reward. The first step's loss is then log 2 to within 1e-4 (tests/test_dpo_trainer.py).
"""

from __future__ import annotations

import json
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from openft.cores import CoreShare
from openft.data.labels import IGNORE_INDEX, RenderedExample, render_examples
from openft.data.preference import preference_chats
from openft.trainer.ranks import Ranks
from openft.trainer.sft import (
    MAX_GRAD_NORM,
    _silent,
    checkpoint,
    collate,
    epoch_batches,
    latest_checkpoint,
    load_policy,
    optimizer_and_schedule,
    resume,
    save_adapter,
    use_attention_for,
)
from openft.trainer.spec import TrainSpec

REWARD_KEYS = ("rewards_chosen", "rewards_rejected", "rewards_margins", "rewards_accuracies")


@dataclass
class Pair:
    chosen: RenderedExample
    rejected: RenderedExample


def train_dpo(spec: TrainSpec, emit) -> None:
    out_dir = Path(spec.output_dir)
    ckpt_dir = out_dir / "checkpoints"
    ranks = Ranks.from_environment()
    device = ranks.device()
    cores = CoreShare(spec.cores_dir if device.type == "cpu" else None, "trainer", spec.threads)
    cores.busy(True)
    torch.set_num_threads(cores.threads())
    if not ranks.leader:
        emit = _silent
    torch.manual_seed(spec.seed)

    tokenizer, model, pad_id = load_policy(spec, device)
    for module in model.modules():  # no LoRA dropout (see the module docstring)
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    trained = ranks.wrap(model)

    train_set = load_pairs(tokenizer, spec.training_file, spec.max_length, "training_file")
    valid_set = (
        load_pairs(tokenizer, spec.validation_file, spec.max_length, "validation_file") if spec.validation_file else []
    )
    n_epochs, batch_size = spec.n_epochs, spec.batch_size
    total_steps = math.ceil(len(train_set) / batch_size) * n_epochs
    epoch_tokens = sum(len(pair.chosen.input_ids) + len(pair.rejected.input_ids) for pair in train_set)
    eval_every = spec.eval_every or max(1, total_steps // 10)
    params, optimizer, scheduler, warmup = optimizer_and_schedule(model, spec, total_steps)

    # One set of batches for every epoch (and this process's share of each), the validation
    # set's in order, and the reference in each: the model as loaded, before any step (and
    # before a checkpoint is restored).
    lengths = [max(len(pair.chosen.input_ids), len(pair.rejected.input_ids)) for pair in train_set]
    batches = epoch_batches(lengths, batch_size, spec.seed, 0)
    batch_sizes = [len(batch) for batch in batches]
    shares = [ranks.share(batch) for batch in batches]
    train_reference = [reference_logps(model, [train_set[i] for i in share], pad_id, device) for share, _ in shares]
    valid_batches = [valid_set[b : b + batch_size] for b in range(0, len(valid_set), batch_size)]
    valid_reference = [reference_logps(model, batch, pad_id, device) for batch in valid_batches]
    eval_batches = math.ceil(spec.eval_examples / batch_size)  # the batches the periodic eval runs

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

    t0, tokens0 = time.perf_counter(), tokens
    for epoch in range(start_epoch, n_epochs):
        for b in batch_order(len(shares), spec.seed, epoch):
            if (threads := cores.threads()) != torch.get_num_threads():
                torch.set_num_threads(threads)
            trained.train()
            share, weight = shares[b]
            pairs = [train_set[i] for i in share]
            input_ids, attention_mask, labels = collate_pairs(pairs, pad_id, device)
            use_attention_for(model, input_ids.shape, device)
            sums = pair_sums(trained, input_ids, attention_mask, labels, train_reference[b].to(device), spec.beta)
            totals = ranks.sum(
                weight
                * torch.stack([value.detach().double() for value in sums.values()] + [attention_mask.sum().double()])
            )
            n_pairs = batch_sizes[b]
            chosen_tokens = totals[list(sums).index("chosen_tokens")]
            # the batch's mean DPO loss plus the SFT term's mean over the preferred tokens, as one
            # process would compute it over the whole batch (DDP averages over ranks: hence world)
            loss = sums["dpo_loss"] / n_pairs + spec.sft_weight * sums["sft_loss"] / chosen_tokens
            (loss * weight * ranks.world).backward()
            torch.nn.utils.clip_grad_norm_(params, MAX_GRAD_NORM)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            tokens += int(totals[-1])

            metrics = {
                "type": "metrics",
                "step": step,
                "total_steps": total_steps,
                "epoch": epoch + 1,
                **{f"train_{key}": value for key, value in summary(dict(zip(sums, totals.tolist())), n_pairs).items()},
                "tokens": tokens,
            }
            if valid_set and (step % eval_every == 0 or step == total_steps):
                some = slice(0, eval_batches)
                results = evaluate_pairs(model, valid_batches[some], valid_reference[some], pad_id, device, spec.beta)
                metrics.update({f"valid_{key}": value for key, value in results.items()})
            if valid_set and step == total_steps:
                results = evaluate_pairs(model, valid_batches, valid_reference, pad_id, device, spec.beta)
                metrics.update({f"full_valid_{key}": value for key, value in results.items()})
            emit(metrics)
            print(
                f"step {step}/{total_steps} loss {metrics['train_loss']:.4f} "
                f"margin {metrics['train_rewards_margins']:.3f} "
                f"{(tokens - tokens0) / (time.perf_counter() - t0):.0f} tok/s",
                file=sys.stderr,
            )

        position = {"step": step, "epoch": epoch + 1, "tokens": tokens, "total_steps": total_steps}
        checkpoint(ckpt_dir, position, metrics, model, optimizer, scheduler, device, ranks, emit)

    adapter_dir = out_dir / "adapter"
    if ranks.leader:
        save_adapter(adapter_dir, model, spec, total_steps, warmup, eval_every, len(train_set), ranks.world)
    ranks.close()
    cores.close()
    emit({"type": "done", "trained_tokens": epoch_tokens * n_epochs, "adapter_path": str(adapter_dir)})


# -------------------------------------------------------------------------------------------
# data


def load_pairs(tokenizer, path: str, max_length: int, param: str) -> list[Pair]:
    """Read a DPO JSONL file (validated upstream) and render each pair's two sides. A pair either
    of whose replies is truncated away entirely is dropped."""
    pairs = []
    with open(path, encoding="utf-8") as f:
        for line_no, line in enumerate(f, 1):
            if not line.strip():
                continue
            chosen, rejected = render_examples(tokenizer, list(preference_chats(json.loads(line))), max_length)
            if any(all(label == IGNORE_INDEX for label in side.labels[1:]) for side in (chosen, rejected)):
                print(
                    f"warning: {param} line {line_no} has a reply past max_length {max_length}; skipped",
                    file=sys.stderr,
                )
                continue
            pairs.append(Pair(chosen, rejected))
    if not pairs:
        raise ValueError(f"{param} has no pair whose replies fit within max_length {max_length}")
    return pairs


def collate_pairs(pairs: list[Pair], pad_id: int, device):
    """The batch of 2B rows: the B chosen sides, then the B rejected ones."""
    return collate([pair.chosen for pair in pairs] + [pair.rejected for pair in pairs], pad_id, device)


# -------------------------------------------------------------------------------------------
# the loss


def sequence_logps(model, input_ids, attention_mask, labels):
    """Per row: the summed log-probability of its trained tokens, how many there are, and how many
    of them are the argmax. The LM head runs only where a trained token is predicted."""
    keep = torch.zeros_like(labels, dtype=torch.bool)
    keep[:, :-1] = labels[:, 1:] != IGNORE_INDEX
    targets = labels[:, 1:][keep[:, :-1]]
    rows = keep.nonzero()[:, 0]  # the kept positions, row by row, as the model returns their logits
    logits = model(input_ids=input_ids, attention_mask=attention_mask, logits_to_keep=keep).logits.float()
    token_logps = -F.cross_entropy(logits, targets, reduction="none")
    n = labels.shape[0]
    logps = torch.zeros(n, device=logits.device).index_add(0, rows, token_logps)
    counts = torch.bincount(rows, minlength=n)
    correct = torch.bincount(rows, weights=(logits.argmax(-1) == targets).float(), minlength=n)
    return logps, counts, correct


def dpo_losses(chosen, rejected, reference_chosen, reference_rejected, beta: float):
    """Per pair: the DPO (sigmoid) loss and the two implicit rewards."""
    chosen_rewards = beta * (chosen - reference_chosen)
    rejected_rewards = beta * (rejected - reference_rejected)
    return -F.logsigmoid(chosen_rewards - rejected_rewards), chosen_rewards, rejected_rewards


def pair_sums(model, input_ids, attention_mask, labels, reference: torch.Tensor, beta: float) -> dict:
    """Sums over a batch of pairs (rows: chosen, then rejected; `reference`: [B, 2] log-probs):
    the DPO loss, the preferred tokens' negative log-likelihood, and what the metrics average."""
    logps, counts, correct = sequence_logps(model, input_ids, attention_mask, labels)
    chosen, rejected = logps.chunk(2)
    losses, chosen_rewards, rejected_rewards = dpo_losses(chosen, rejected, reference[:, 0], reference[:, 1], beta)
    half = chosen.shape[0]
    return {
        "dpo_loss": losses.sum(),
        "sft_loss": -chosen.sum(),
        "chosen_tokens": counts[:half].sum(),
        "correct": correct[:half].sum(),
        "rewards_chosen": chosen_rewards.detach().sum(),
        "rewards_rejected": rejected_rewards.detach().sum(),
        "rewards_accuracies": (chosen_rewards > rejected_rewards).float().sum(),
    }


def summary(sums: dict, n_pairs: int) -> dict:
    """The metrics of `pair_sums`' totals over `n_pairs` pairs (the keys get a train_/valid_ prefix)."""
    return {
        "loss": sums["dpo_loss"] / n_pairs,
        "mean_token_accuracy": sums["correct"] / sums["chosen_tokens"],
        "sft_loss": sums["sft_loss"] / sums["chosen_tokens"],
        "rewards_chosen": sums["rewards_chosen"] / n_pairs,
        "rewards_rejected": sums["rewards_rejected"] / n_pairs,
        "rewards_margins": (sums["rewards_chosen"] - sums["rewards_rejected"]) / n_pairs,
        "rewards_accuracies": sums["rewards_accuracies"] / n_pairs,
    }


def batch_order(n_batches: int, seed: int, epoch: int) -> list[int]:
    """The order of the (fixed) batches in an epoch: a seeded shuffle per epoch."""
    g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(n_batches, generator=g).tolist()


@torch.no_grad()
def reference_logps(model, pairs: list[Pair], pad_id: int, device) -> torch.Tensor:
    """[len(pairs), 2]: the chosen and rejected log-probabilities of one batch of pairs under
    `model` as it is, computed as a training step computes that batch."""
    model.eval()
    input_ids, attention_mask, labels = collate_pairs(pairs, pad_id, device)
    use_attention_for(model, input_ids.shape, device)
    logps, _, _ = sequence_logps(model, input_ids, attention_mask, labels)
    return torch.stack(logps.chunk(2), dim=1).cpu()


@torch.no_grad()
def evaluate_pairs(model, batches: list[list[Pair]], references: list[torch.Tensor], pad_id: int, device, beta: float):
    """`summary` over these batches of pairs (each with its reference from `reference_logps`)."""
    model.eval()
    totals: dict[str, float] = {}
    for pairs, reference in zip(batches, references):
        input_ids, attention_mask, labels = collate_pairs(pairs, pad_id, device)
        use_attention_for(model, input_ids.shape, device)
        sums = pair_sums(model, input_ids, attention_mask, labels, reference.to(device), beta)
        for key, value in sums.items():
            totals[key] = totals.get(key, 0.0) + float(value)
    return summary(totals, sum(map(len, batches)))
