"""The trainer carries out the memory plan and starts from an earlier fine-tune's adapter: on a
tiny random Llama (fp32, one thread, so that runs compare exactly), gradient checkpointing
trains to the same losses as without it, an adapter to go on from is the one training starts
with, and a QLoRA spec on a host without CUDA and bitsandbytes fails with one clear event."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from openft.settings import BUNDLED_MODEL
from tests.tiny_models import build
from tests.trainer_data import QUESTIONS, losses, write_jsonl


@pytest.fixture(scope="module")
def tiny_llama(model_store, tmp_path_factory) -> Path:
    return build("llama", model_store / BUNDLED_MODEL, tmp_path_factory.mktemp("tiny") / "llama")


def run_trainer(directory: Path, name: str, **fields) -> list[dict]:
    spec = {
        "training_file": str(write_jsonl(directory / "train.jsonl", QUESTIONS[:12])),
        "output_dir": str(directory / name),
        "n_epochs": 1,
        "batch_size": 4,
        "learning_rate": 1e-3,
        "threads": 1,
        "base_dtype": "float32",
        **fields,
    }
    (directory / f"{name}.json").write_text(json.dumps(spec))
    done = subprocess.run(
        [sys.executable, "-m", "openft.trainer", str(directory / f"{name}.json")],
        capture_output=True,
        text=True,
        timeout=600,
    )
    return [json.loads(line) for line in done.stdout.splitlines()]


def test_gradient_checkpointing_trains_to_the_same_losses(tiny_llama, tmp_path):
    plain = run_trainer(tmp_path, "plain", base_model_path=str(tiny_llama), n_epochs=2)
    checkpointed = run_trainer(
        tmp_path, "checkpointed", base_model_path=str(tiny_llama), n_epochs=2, gradient_checkpointing=True
    )
    assert plain[-1]["type"] == checkpointed[-1]["type"] == "done", (plain[-1], checkpointed[-1])
    assert len(losses(plain)) == 6
    assert losses(checkpointed) == pytest.approx(losses(plain), rel=1e-6)
    assert losses(plain)[-1] < losses(plain)[0]  # it learned: the same updates, not none


def test_training_goes_on_from_the_adapter_it_is_given(tiny_llama, tmp_path):
    """A run from an adapter, at learning rate 0 on one batch of the whole file, has as its
    first loss the first run's adapter's loss on that file (its full validation loss)."""
    base = str(tiny_llama)
    first = run_trainer(
        tmp_path, "first", base_model_path=base, n_epochs=3, validation_file=str(tmp_path / "train.jsonl")
    )
    adapter = first[-1]["adapter_path"]
    full_valid_loss = [e for e in first if e["type"] == "metrics"][-1]["full_valid_loss"]
    again = run_trainer(tmp_path, "again", base_model_path=base, init_adapter=adapter, batch_size=12, learning_rate=0.0)
    fresh = run_trainer(tmp_path, "fresh", base_model_path=base, batch_size=12, learning_rate=0.0)
    assert losses(again)[0] == pytest.approx(full_valid_loss, rel=1e-5)
    assert losses(fresh)[0] > full_valid_loss + 0.1
    saved = json.loads((tmp_path / "again" / "adapter" / "adapter_config.json").read_text())
    assert saved["r"] == 8


def test_a_qlora_spec_without_cuda_and_bitsandbytes_is_one_error_event(tiny_llama, tmp_path):
    events = run_trainer(tmp_path, "qlora", base_model_path=str(tiny_llama), quantization="nf4")
    assert [e["type"] for e in events] == ["error"]
    assert "QLoRA needs a CUDA device and bitsandbytes" in events[0]["message"]
    assert "pip install bitsandbytes" in events[0]["message"]
