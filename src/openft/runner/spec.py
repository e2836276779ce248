"""A job row resolved into the trainer's spec (`trainer/spec.py`), written as the job's spec.json:
its hyperparameters, its memory plan (`runner/planning.py`), and the adapter it goes on from."""

import json
from pathlib import Path

from openft.data.hyperparams import DPO_BETA, Hyperparameters, resolve_hyperparameters
from openft.data.validate import scan_chat_jsonl
from openft.models.parameters import parameter_count
from openft.runner.planning import LongestLine
from openft.settings import Settings
from openft.store.tables import JobRow
from openft.trainer.plan import Plan
from openft.trainer.spec import Lora, TrainSpec, base_learning_rate


def job_dir(settings: Settings, job_id: str) -> Path:
    return settings.jobs_dir / job_id


def resolve(job: JobRow, training_path: Path) -> tuple[Hyperparameters, int, int]:
    """The job's hyperparameters with "auto" resolved, its examples, and the bound on its longest
    example's tokens that its memory plan counts with (the numbers its create call counted)."""
    with open(training_path, "rb") as lines:
        measured = LongestLine(lines)
        _, n_examples = scan_chat_jsonl(measured, job.method)
    resolved = resolve_hyperparameters(n_examples, job.hyperparameters, job.method)
    return resolved, n_examples, measured.example_tokens


def read_lora(adapter_dir: Path) -> Lora:
    """The LoRA config a saved peft adapter was trained with."""
    config = json.loads((Path(adapter_dir) / "adapter_config.json").read_text())
    targets = config["target_modules"]
    return Lora(
        r=config["r"],
        alpha=config["lora_alpha"],
        dropout=config["lora_dropout"],
        target_modules=sorted(targets) if isinstance(targets, list) else targets,
    )


def write_spec(
    settings: Settings,
    job: JobRow,
    hyperparameters: Hyperparameters,
    training_path: Path,
    validation_path: Path | None,
    plan: Plan,
    initial_adapter: Path | None = None,
) -> Path:
    directory = job_dir(settings, job.id)
    directory.mkdir(parents=True, exist_ok=True)
    base = settings.models_dir / job.base_model
    spec = TrainSpec(
        base_model_path=str(base.resolve()),
        training_file=str(training_path.resolve()),
        validation_file=str(validation_path.resolve()) if validation_path else None,
        output_dir=str((directory / "out").resolve()),
        n_epochs=hyperparameters.n_epochs,
        batch_size=hyperparameters.batch_size,
        learning_rate=base_learning_rate(parameter_count(base)) * hyperparameters.learning_rate_multiplier,
        seed=job.seed,
        threads=settings.train_threads,
        cores_dir=str(settings.cores_dir.resolve()),
        base_dtype=plan.dtype,
        gradient_checkpointing=plan.gradient_checkpointing,
        quantization="nf4" if plan.method == "qlora" else "none",
        init_adapter=str(initial_adapter.resolve()) if initial_adapter else None,
        method=job.method,
        beta=getattr(hyperparameters, "beta", DPO_BETA),
        lora=read_lora(initial_adapter) if initial_adapter else Lora(),
    )
    path = directory / "spec.json"
    spec.write(path)
    return path
