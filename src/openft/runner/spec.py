"""A job row resolved into the trainer's spec (`trainer/spec.py`), written as the job's spec.json."""

from pathlib import Path

from openft.data.hyperparams import Hyperparameters, resolve_hyperparameters
from openft.data.validate import scan_chat_jsonl
from openft.models.parameters import parameter_count
from openft.settings import Settings
from openft.store.tables import JobRow
from openft.trainer.spec import TrainSpec, base_learning_rate


def job_dir(settings: Settings, job_id: str) -> Path:
    return settings.jobs_dir / job_id


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
    )
    path = directory / "spec.json"
    spec.write(path)
    return path
