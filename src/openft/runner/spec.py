"""The trainer's spec file: everything one training run needs, resolved from a job row."""

import json
import math
from pathlib import Path

from openft.data.hyperparams import Hyperparameters, resolve_hyperparameters
from openft.data.validate import scan_chat_jsonl
from openft.settings import Settings
from openft.store.tables import JobRow

# LoRA learning rate that learning_rate_multiplier=1 means, by the base model's size.
# Measured on SmolLM2-135M, LoRA r=8, 20 examples x 5 epochs at batch 1: 1e-4..1e-3 all taught a
# fixed reply style on 8/8 held-out prompts; above ~1e-3 the model parrots training answers, at
# 1e-4 some replies are only the style. QLoRA's recipe uses the same 2e-4 up to 13B parameters
# and halves it for 33B and larger. "auto" doubles it below 100 examples.
BASE_LEARNING_RATE = 2e-4
LARGE_MODEL_PARAMETERS = 20e9
LARGE_MODEL_LEARNING_RATE = 1e-4
# Examples longer than this are truncated (announced by `openft data check`).
MAX_TRAINING_TOKENS = 2048
LORA = {"r": 8, "alpha": 16, "dropout": 0.0, "target_modules": "all-linear"}


def job_dir(settings: Settings, job_id: str) -> Path:
    return settings.jobs_dir / job_id


def base_learning_rate(model_dir: Path) -> float:
    return LARGE_MODEL_LEARNING_RATE if parameter_count(model_dir) >= LARGE_MODEL_PARAMETERS else BASE_LEARNING_RATE


def parameter_count(model_dir: Path) -> int:
    """The parameters in a model's safetensors files, read from their headers (no weights loaded)."""
    from safetensors import safe_open

    total = 0
    for path in model_dir.glob("*.safetensors"):
        with safe_open(path, "np") as weights:
            total += sum(math.prod(weights.get_slice(name).get_shape()) for name in weights.keys())
    return total


def resolve(job: JobRow, training_path: Path) -> Hyperparameters:
    with open(training_path, "rb") as lines:
        _, n_examples = scan_chat_jsonl(lines)
    return resolve_hyperparameters(n_examples, job.hyperparameters)


def write_spec(
    settings: Settings,
    job: JobRow,
    hyperparameters: Hyperparameters,
    training_path: Path,
    validation_path: Path | None,
) -> Path:
    directory = job_dir(settings, job.id)
    directory.mkdir(parents=True, exist_ok=True)
    spec = {
        "base_model_path": str((settings.models_dir / job.base_model).resolve()),
        "training_file": str(training_path.resolve()),
        "validation_file": str(validation_path.resolve()) if validation_path else None,
        "output_dir": str((directory / "out").resolve()),
        "n_epochs": hyperparameters.n_epochs,
        "batch_size": hyperparameters.batch_size,
        "learning_rate": base_learning_rate(settings.models_dir / job.base_model)
        * hyperparameters.learning_rate_multiplier,
        "seed": job.seed,
        "max_length": MAX_TRAINING_TOKENS,
        "threads": settings.train_threads,
        "lora": LORA,
    }
    path = directory / "spec.json"
    path.write_text(json.dumps(spec, indent=2))
    return path
