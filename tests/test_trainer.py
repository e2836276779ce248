"""`python -m openft.trainer spec.json` end to end on a tiny job: the stdout event stream,
the files it leaves, a falling loss, the same loss curve for the same seed, and exact resume."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from openft.settings import BUNDLED_MODEL
from tests.helpers import train_threads
from tests.trainer_data import QUESTIONS, losses, write_jsonl


@pytest.fixture
def base_model_path(model_store) -> Path:
    return model_store / BUNDLED_MODEL


def run_trainer(spec: dict, spec_path: Path) -> tuple[int, list[dict]]:
    spec_path.write_text(json.dumps(spec))
    proc = subprocess.run(
        [sys.executable, "-m", "openft.trainer", str(spec_path)], capture_output=True, text=True, timeout=300
    )
    return proc.returncode, [json.loads(line) for line in proc.stdout.splitlines()]  # stdout is JSON lines only


@pytest.fixture
def spec(tmp_path, base_model_path) -> dict:
    return {
        "base_model_path": str(base_model_path),
        "training_file": str(write_jsonl(tmp_path / "train.jsonl", QUESTIONS[:12])),
        "validation_file": str(write_jsonl(tmp_path / "valid.jsonl", QUESTIONS[12:])),
        "output_dir": str(tmp_path / "job" / "out"),
        "n_epochs": 2,
        "batch_size": 4,
        "learning_rate": 1e-3,
        "seed": 42,
        "max_length": 256,
        "threads": train_threads(),
        "lora": {"r": 8, "alpha": 16, "dropout": 0.0, "target_modules": "all-linear"},
    }


def test_train_resume_and_determinism(spec, tmp_path):
    rc, events = run_trainer(spec, tmp_path / "spec.json")
    assert rc == 0, events
    out = Path(spec["output_dir"])

    # the event stream: started, 3 steps + a checkpoint per epoch, done
    assert [e["type"] for e in events] == ["started"] + (["metrics"] * 3 + ["checkpoint"]) * 2 + ["done"]
    assert events[0] == {
        "type": "started",
        "total_steps": 6,
        "n_examples": 12,
        "n_epochs": 2,
        "batch_size": 4,
        "start_step": 0,
    }
    steps = [e for e in events if e["type"] == "metrics"]
    assert [(e["step"], e["epoch"], e["total_steps"]) for e in steps] == [
        (1, 1, 6),
        (2, 1, 6),
        (3, 1, 6),
        (4, 2, 6),
        (5, 2, 6),
        (6, 2, 6),
    ]
    assert all(0 <= e["train_mean_token_accuracy"] <= 1 and e["valid_loss"] > 0 for e in steps)
    assert "full_valid_loss" in steps[-1] and "full_valid_loss" not in steps[0]
    assert [e["tokens"] for e in steps] == sorted(e["tokens"] for e in steps)
    checkpoints = [e for e in events if e["type"] == "checkpoint"]
    assert [(c["step"], c["epoch"]) for c in checkpoints] == [(3, 1), (6, 2)]
    assert checkpoints[0]["path"] == str(out / "checkpoints" / "step-3" / "adapter")
    assert checkpoints[0]["metrics"]["train_loss"] == steps[2]["train_loss"]
    assert events[-1] == {"type": "done", "trained_tokens": steps[-1]["tokens"], "adapter_path": str(out / "adapter")}

    # the files: adapters a server can load, the resolved config, resumable state
    for adapter in (out / "adapter", out / "checkpoints" / "step-3" / "adapter"):
        assert (adapter / "adapter_config.json").exists() and (adapter / "adapter_model.safetensors").exists()
    assert json.loads((out / "adapter" / "training_config.json").read_text())["learning_rate"] == 1e-3
    assert (out / "checkpoints" / "step-3" / "trainer_state.pt").exists()

    # it learns "Ahoy!"
    curve = losses(events)
    assert curve[-1] < curve[0] / 3
    assert steps[-1]["full_valid_loss"] < steps[0]["valid_loss"] / 3

    # same seed, same data → the same loss curve
    again = dict(spec, output_dir=str(tmp_path / "again" / "out"))
    rc, events_again = run_trainer(again, tmp_path / "again.json")
    assert rc == 0, events_again
    assert losses(events_again) == pytest.approx(curve, abs=1e-5)

    # a run that finds checkpoints resumes from the latest: here after epoch 1, as if it had crashed
    shutil.rmtree(Path(again["output_dir"]) / "checkpoints" / "step-6")
    shutil.rmtree(Path(again["output_dir"]) / "adapter")
    rc, resumed = run_trainer(again, tmp_path / "again.json")
    assert rc == 0, resumed
    assert resumed[0]["start_step"] == 3
    assert [e["step"] for e in resumed if e["type"] == "metrics"] == [4, 5, 6]
    assert losses(resumed) == pytest.approx(curve[3:], abs=1e-5)
    assert resumed[-1]["trained_tokens"] == events[-1]["trained_tokens"]


def test_failure_is_one_error_event(tmp_path, spec):
    rc, events = run_trainer(dict(spec, training_file=str(tmp_path / "missing.jsonl")), tmp_path / "spec.json")
    assert rc == 1
    assert [e["type"] for e in events] == ["error"]
    assert "missing.jsonl" in events[0]["message"]
