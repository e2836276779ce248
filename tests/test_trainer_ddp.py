"""The trainer under torchrun (what OPENFT_TRAIN_GPUS > 1 launches), here with two CPU ranks
over gloo: the same events, losses and adapter as one process, told once, by rank 0."""

import json
import subprocess
from pathlib import Path

import pytest
from safetensors.torch import load_file

from openft.runner.launch import trainer_command
from openft.settings import Settings
from tests.trainer_data import QUESTIONS, losses, write_jsonl


def train(spec: dict, directory: Path, gpus: int) -> list[dict]:
    directory.mkdir()
    spec = {**spec, "output_dir": str(directory / "out")}
    (directory / "spec.json").write_text(json.dumps(spec))
    command = trainer_command(Settings(train_gpus=gpus), directory / "spec.json")
    proc = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]


def test_two_ranks_take_the_steps_one_process_takes(tmp_path, model_store):
    spec = {
        "base_model_path": str(model_store / "SmolLM2-135M-Instruct"),
        "training_file": str(write_jsonl(tmp_path / "train.jsonl", QUESTIONS[:7])),  # batches of 4 and 3
        "validation_file": str(write_jsonl(tmp_path / "valid.jsonl", QUESTIONS[12:])),
        "n_epochs": 1,
        "batch_size": 4,
        "learning_rate": 1e-3,
        "seed": 7,
        "max_length": 128,
        "threads": 1,
        # fp32: bf16 rounds a batch's halves differently from the whole, which would hide the split's math
        "base_dtype": "float32",
    }
    single = train(spec, tmp_path / "one", gpus=1)
    ranks = train(spec, tmp_path / "two", gpus=2)

    assert [e["type"] for e in ranks] == [e["type"] for e in single]  # once: rank 1 is silent
    assert losses(ranks) == pytest.approx(losses(single), rel=1e-4)
    assert [e["tokens"] for e in ranks if e["type"] == "metrics"] == [
        e["tokens"] for e in single if e["type"] == "metrics"
    ]
    assert ranks[-1]["trained_tokens"] == single[-1]["trained_tokens"]
    one = load_file(tmp_path / "one" / "out" / "adapter" / "adapter_model.safetensors")
    two = load_file(tmp_path / "two" / "out" / "adapter" / "adapter_model.safetensors")
    assert one.keys() == two.keys()
    for name in one:
        # Summation order differs, and Adam turns a tiny gradient's rounding into a whole step
        # for the odd element: compare each tensor as a whole.
        assert ((two[name] - one[name]).norm() / one[name].norm()).item() < 1e-2, name
    assert (tmp_path / "two" / "out" / "checkpoints" / "step-2" / "trainer_state.pt").exists()
