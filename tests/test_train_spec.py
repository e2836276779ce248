"""The trainer's spec (`trainer/spec.py`): what the runner writes is what the trainer reads, a
field left out takes the recipe's default, a key it does not know fails, and reading it (the
runner, the data check) never loads torch."""

import json
import subprocess
import sys

import pytest

from openft.trainer.spec import MAX_LENGTH, Lora, TrainSpec, base_learning_rate


def test_a_spec_reads_back_as_written_with_the_recipe_as_defaults(tmp_path):
    spec = TrainSpec(base_model_path="m", training_file="t.jsonl", output_dir="out", seed=7, threads=2)
    spec.write(tmp_path / "spec.json")
    assert TrainSpec.read(tmp_path / "spec.json") == spec
    written = json.loads((tmp_path / "spec.json").read_text())
    assert written["lora"] == {"r": 8, "alpha": 16, "dropout": 0.0, "target_modules": "all-linear"}

    (tmp_path / "short.json").write_text(json.dumps({"base_model_path": "m", "training_file": "t", "output_dir": "o"}))
    short = TrainSpec.read(tmp_path / "short.json")
    assert (short.max_length, short.lora, short.base_dtype) == (MAX_LENGTH, Lora(), "auto")


def test_an_unknown_key_fails_naming_it(tmp_path):
    (tmp_path / "spec.json").write_text(
        json.dumps({"base_model_path": "m", "training_file": "t", "output_dir": "o", "lr": 1})
    )
    with pytest.raises(TypeError, match="'lr'"):
        TrainSpec.read(tmp_path / "spec.json")


def test_the_base_rate_halves_from_20b_parameters():
    assert base_learning_rate(135_000_000) == 2e-4
    assert base_learning_rate(70_000_000_000) == 1e-4


def test_the_spec_and_the_runner_import_without_torch():
    code = "import sys, openft.trainer.spec, openft.runner.spec; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
