"""The DPO trainer (trainer/dpo.py) on a tiny random-weight model: one batch's loss against the
formula computed directly from log-probabilities, the reference taken from the model as loaded,
only the final reply trained, and the subprocess's events, checkpoints and exact resume."""

import dataclasses
import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from openft.data.labels import IGNORE_INDEX
from openft.settings import BUNDLED_MODEL
from openft.trainer import dpo
from openft.trainer.sft import load_policy
from openft.trainer.spec import Lora, TrainSpec
from tests.helpers import train_threads

CPU = torch.device("cpu")
QUESTIONS = ["What is 2+2?", "Name a colour.", "Who wrote Hamlet?", "Where is Tokyo?", "Why is the sky blue?"]


def pairs_file(path: Path, n: int = 4) -> Path:
    lines = []
    for i in range(n):
        question = QUESTIONS[i % len(QUESTIONS)]
        messages = [{"role": "user", "content": question}]
        if i % 2:  # a multi-turn input: its assistant turn is context, not trained
            messages = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello there."}, *messages]
        lines.append(
            {
                "input": {"messages": messages},
                "preferred_output": [{"role": "assistant", "content": f"Ahoy! Answer {i}."}],
                "non_preferred_output": [{"role": "assistant", "content": f"Answer {i}."}],
            }
        )
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


@pytest.fixture
def spec(tmp_path, tiny_models) -> TrainSpec:
    return TrainSpec(
        base_model_path=str(tiny_models["llama"]),
        training_file=str(pairs_file(tmp_path / "train.jsonl")),
        validation_file=str(pairs_file(tmp_path / "valid.jsonl", 2)),
        output_dir=str(tmp_path / "out"),
        n_epochs=2,
        batch_size=2,
        learning_rate=1e-2,
        max_length=128,
        threads=train_threads(),
        method="dpo",
        beta=0.3,
    )


def direct_logps(model, rendered) -> torch.Tensor:
    """A sequence's summed log-probability of its trained tokens, from the full logits."""
    ids = torch.tensor([rendered.input_ids])
    logprobs = torch.log_softmax(model(input_ids=ids).logits[0].double(), -1)
    labels = torch.tensor(rendered.labels)
    positions = (labels[1:] != IGNORE_INDEX).nonzero()[:, 0]
    return logprobs[positions, labels[1:][positions]].sum()


def test_one_batch_loss_equals_the_formula(spec):
    """In fp32, where a batched forward pass and a direct one agree to the tolerance checked."""
    torch.manual_seed(0)
    spec = dataclasses.replace(spec, base_dtype="float32")
    tokenizer, model, pad_id = load_policy(spec, torch.device("cpu"))
    pairs = dpo.load_pairs(tokenizer, spec.training_file, spec.max_length, "training_file")

    # only the final reply carries loss: the multi-turn input's assistant turn does not
    trained = tokenizer.decode([t for t in pairs[1].chosen.labels if t != IGNORE_INDEX])
    assert "Ahoy! Answer 1." in trained and "Hello there" not in trained

    reference = dpo.reference_logps(model, pairs, pad_id, CPU)
    with torch.no_grad():  # a fresh adapter computes the base: the reference is the base
        base = torch.tensor([[direct_logps(model, p.chosen), direct_logps(model, p.rejected)] for p in pairs])
        for name, parameter in model.named_parameters():
            if "lora_B" in name:  # now the policy differs from the reference
                parameter.normal_(0, 0.2)
    assert reference.double() == pytest.approx(base, abs=1e-3)

    model.eval()
    batch = dpo.collate_pairs(pairs, pad_id, CPU)
    with torch.no_grad():
        sums = dpo.pair_sums(model, *batch, reference, spec.beta)
        chosen = torch.stack([direct_logps(model, p.chosen) for p in pairs])
        rejected = torch.stack([direct_logps(model, p.rejected) for p in pairs])
    ref = reference.double()
    margins = spec.beta * ((chosen - ref[:, 0]) - (rejected - ref[:, 1]))
    expected = -F.logsigmoid(margins).mean()
    assert float(sums["dpo_loss"]) / len(pairs) == pytest.approx(float(expected), rel=1e-4)
    assert float(margins.abs().max()) > 0.01  # the check compares something
    chosen_tokens = sum(sum(label != IGNORE_INDEX for label in p.chosen.labels[1:]) for p in pairs)
    assert int(sums["chosen_tokens"]) == chosen_tokens
    assert float(sums["sft_loss"]) / chosen_tokens == pytest.approx(float(-chosen.sum() / chosen_tokens), rel=1e-4)
    metrics = dpo.summary({key: float(value) for key, value in sums.items()}, len(pairs))
    assert metrics["rewards_margins"] == pytest.approx(float(margins.mean()), abs=1e-5)
    rewards_chosen = spec.beta * (chosen - ref[:, 0])
    assert metrics["rewards_chosen"] == pytest.approx(float(rewards_chosen.mean()), abs=1e-5)
    assert metrics["rewards_accuracies"] == float((margins > 0).double().mean())


def test_from_an_ft_models_adapter_the_reference_is_that_model(spec, tmp_path):
    """Which model the reference is, checked in fp32 (a direct forward pass agrees to 1e-3 there)."""
    torch.manual_seed(1)
    spec = dataclasses.replace(spec, base_dtype="float32")
    _, supervised, _ = load_policy(spec, torch.device("cpu"))
    with torch.no_grad():
        for name, parameter in supervised.named_parameters():
            if "lora_B" in name:  # a "supervised fine-tune": an adapter that changes the model
                parameter.normal_(0, 0.2)
    supervised.save_pretrained(tmp_path / "sft")

    from_ft = dataclasses.replace(spec, init_adapter=str(tmp_path / "sft"))
    tokenizer, policy, pad_id = load_policy(from_ft, torch.device("cpu"))
    pairs = dpo.load_pairs(tokenizer, spec.training_file, spec.max_length, "training_file")
    reference = torch.cat([dpo.reference_logps(policy, pairs[b : b + 2], pad_id, CPU) for b in (0, 2)]).double()
    supervised.eval()
    with torch.no_grad():
        expected = torch.tensor(
            [[direct_logps(supervised, p.chosen), direct_logps(supervised, p.rejected)] for p in pairs]
        )
        with supervised.disable_adapter():
            base = torch.tensor(
                [[direct_logps(supervised, p.chosen), direct_logps(supervised, p.rejected)] for p in pairs]
            )
    assert reference == pytest.approx(expected, abs=1e-3)
    assert float((reference - base).abs().max()) > 0.1  # the base would be another reference
    assert any(p.requires_grad for name, p in policy.named_parameters() if "lora_" in name)  # and it trains on


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_the_first_step_loss_is_log_2_from_an_ft_models_adapter(tmp_path, model_store, dtype):
    """At step 1 the policy is the reference, so every implicit reward is 0 and the loss is log 2,
    on both float paths: the reference log-probabilities are computed as the policy's are (same
    batches, padding and attention), on the bundled model, from an adapter that changes it and
    was trained with LoRA dropout."""
    base = model_store / BUNDLED_MODEL
    spec = TrainSpec(
        base_model_path=str(base),
        training_file=str(pairs_file(tmp_path / "train.jsonl", 4)),  # one step: cheap in emulated bf16 too
        output_dir=str(tmp_path / "out"),
        n_epochs=1,
        batch_size=4,
        max_length=128,
        method="dpo",
        beta=0.1,
        base_dtype=dtype,
        threads=train_threads(),
        lora=Lora(dropout=0.1),
    )
    torch.manual_seed(2)
    _, supervised, _ = load_policy(spec, torch.device("cpu"))
    with torch.no_grad():
        for name, parameter in supervised.named_parameters():
            if "lora_B" in name:
                parameter.normal_(0, 0.02)
    supervised.save_pretrained(tmp_path / "sft")

    events = run_trainer(dataclasses.replace(spec, init_adapter=str(tmp_path / "sft")), tmp_path / "spec.json")
    first = next(e for e in events if e["type"] == "metrics")
    assert first["train_loss"] == pytest.approx(math.log(2), abs=1e-4)
    assert first["train_rewards_margins"] == pytest.approx(0, abs=1e-4)


def run_trainer(spec: TrainSpec, path: Path) -> list[dict]:
    spec.write(path)
    proc = subprocess.run(
        [sys.executable, "-m", "openft.trainer", str(path)], capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return [json.loads(line) for line in proc.stdout.splitlines()]


def test_dpo_trainer_events_checkpoints_and_exact_resume(spec, tmp_path):
    events = run_trainer(spec, tmp_path / "spec.json")
    assert [e["type"] for e in events] == ["started"] + (["metrics"] * 2 + ["checkpoint"]) * 2 + ["done"]
    steps = [e for e in events if e["type"] == "metrics"]
    keys = {
        "train_loss",
        "train_mean_token_accuracy",
        "train_sft_loss",
        *(f"train_{key}" for key in dpo.REWARD_KEYS),
        "valid_loss",
        "valid_mean_token_accuracy",
        *(f"valid_{key}" for key in dpo.REWARD_KEYS),
    }
    assert keys <= set(steps[0])
    assert {f"full_valid_{key}" for key in dpo.REWARD_KEYS} <= set(steps[-1])
    assert steps[0]["train_loss"] == pytest.approx(0.6931, abs=1e-3)  # policy = reference at step 1
    assert steps[-1]["train_rewards_margins"] > 0 and steps[-1]["train_loss"] < steps[0]["train_loss"]
    checkpoint = next(e for e in events if e["type"] == "checkpoint")
    assert checkpoint["metrics"]["train_rewards_accuracies"] == steps[1]["train_rewards_accuracies"]
    out = Path(spec.output_dir)
    assert json.loads((out / "adapter" / "training_config.json").read_text())["method"] == "dpo"

    # killed after epoch 1: the rerun recomputes the reference from the model as loaded, not from
    # the checkpoint, and goes on exactly as the uninterrupted run did
    shutil.rmtree(out / "checkpoints" / "step-4")
    shutil.rmtree(out / "adapter")
    resumed = run_trainer(spec, tmp_path / "spec.json")
    assert resumed[0]["start_step"] == 2
    again = [e for e in resumed if e["type"] == "metrics"]
    assert [e["train_loss"] for e in again] == pytest.approx([e["train_loss"] for e in steps[2:]], abs=1e-5)
    assert again[-1]["valid_rewards_margins"] == pytest.approx(steps[-1]["valid_rewards_margins"], abs=1e-5)
