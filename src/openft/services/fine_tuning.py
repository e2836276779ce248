"""Fine-tuning jobs as the API sees them: create (with up-front validation), read, list, and
cancel, pause or resume (status changes are runner/jobs.py's).

Everything a create call can reject is checked before the job row exists, so a rejected request
stores nothing. Training itself happens in runner/.
"""

from __future__ import annotations

import re
import secrets
import time

from sqlalchemy import select

from openft import ids
from openft.data.hyperparams import validate_requested_hyperparameters
from openft.data.validate import check_example_count, scan_chat_jsonl
from openft.errors import OpenFTError, job_not_found, not_found
from openft.protocol.fine_tuning import (
    FineTuningJob,
    FineTuningJobCheckpoint,
    FineTuningJobEvent,
    JobCreateParams,
    JobError,
)
from openft.runner import jobs, workers
from openft.runner.planning import LongestLine, job_plan
from openft.services.files import FileService, format_error_message
from openft.services.keys import Caller
from openft.services.models import ModelService
from openft.settings import Settings
from openft.store.db import Database
from openft.store.events import add_event
from openft.store.pages import fetch_page
from openft.store.tables import CheckpointRow, EventRow, JobRow

# The suffix becomes part of a model name split on ':'.
SUFFIX_PATTERN = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


class FineTuningService:
    def __init__(self, settings: Settings, db: Database, files: FileService, models: ModelService):
        self.settings = settings
        self.db = db
        self.files = files
        self.models = models

    def create(self, caller: Caller, params: JobCreateParams) -> JobRow:
        if params.suffix is not None and not SUFFIX_PATTERN.match(params.suffix):
            raise OpenFTError(
                400,
                "suffix may contain only letters, digits, '.', '_' and '-', at most 64 characters.",
                param="suffix",
            )
        method = params.method_type
        check_method(params)
        requested = params.requested_hyperparameters()
        problem = validate_requested_hyperparameters(requested, method)
        if problem:
            param = problem[0] if params.method is None else f"method.{method}.{problem[0]}"
            raise OpenFTError(400, problem[1], param=param)
        base_model, initial_adapter_key = self.models.training_start(caller.organization_id, params.model)
        n_examples, example_tokens = self._check_file(
            caller.organization_id, params.training_file, "training_file", method
        )
        if params.validation_file:
            self._check_file(caller.organization_id, params.validation_file, "validation_file", method)
        self._check_fits(base_model, n_examples, example_tokens, requested, method)

        # A fine-tune of a fine-tune is named after the root base, as the client named it (OpenAI's way).
        root = ids.parse_fine_tuned_model_name(params.model).base if params.model.startswith("ft:") else params.model
        job = JobRow(
            id=ids.job_id(),
            organization_id=caller.organization_id,
            created_at=int(time.time()),
            model=params.model,
            base_model=base_model,
            status="validating_files",
            training_file=params.training_file,
            validation_file=params.validation_file,
            suffix=params.suffix,
            planned_model_name=ids.fine_tuned_model_name(root, caller.organization, params.suffix),
            seed=params.seed if params.seed is not None else secrets.randbelow(2**31),
            hyperparameters=requested,
            method=method,
            result_files=[],
            job_metadata=params.metadata,
            initial_adapter_key=initial_adapter_key,
            n_examples=n_examples,
            example_tokens=example_tokens,
        )
        with self.db.session() as session:
            session.add(job)
            session.flush()
            add_event(session, job.id, f"Created fine-tuning job: {job.id}")
            validating = f"Validating training file: {job.training_file}"
            if job.validation_file:
                validating += f" and validation file: {job.validation_file}"
            add_event(session, job.id, validating)
        return job

    def _check_fits(self, base_model: str, n_examples: int, example_tokens: int, requested: dict, method: str) -> None:
        """400 if the job's memory plan fits none of the workers alive (runner/planning.py). With
        no worker alive, or without the base on this host to plan with, the job is accepted: a
        worker claims only a job that fits it."""
        plans = [
            job_plan(self.settings, base_model, n_examples, example_tokens, requested, device, method=method)
            for device in workers.alive(self.db, self.settings)
        ]
        if not plans or None in plans or any(plan.fits for plan in plans):
            return
        closest = min(plans, key=lambda plan: plan.estimate - plan.budget)
        raise OpenFTError(
            400,
            f"This job cannot train on any worker: {closest.problem}. Use a smaller batch_size, shorter "
            "examples, QLoRA on a CUDA worker, or a worker with more memory.",
            param="model",
            code="insufficient_memory",
        )

    def _check_file(self, organization_id: str, file_id: str, param: str, method: str) -> tuple[int, int]:
        """400 unless the file is a valid fine-tuning file of the caller's for `method` (a line of
        the other method is an error); its examples and the bound on its longest example's tokens."""
        try:
            row = self.files.get(organization_id, file_id)
        except OpenFTError:
            raise not_found("File", file_id, param=param) from None
        if row.purpose != "fine-tune":
            raise OpenFTError(
                400,
                f"File {file_id} has purpose '{row.purpose}', but must be 'fine-tune'.",
                param=param,
                code="invalid_file_purpose",
            )
        with self.files.open(row) as lines:
            measured = LongestLine(lines)
            report, n_examples = scan_chat_jsonl(measured, method)
        if problem := format_error_message(report):
            raise OpenFTError(400, problem, param=param, code="invalid_file_format")
        if param == "training_file":
            if count_issue := check_example_count(n_examples):
                raise OpenFTError(400, count_issue.message, param=param, code=count_issue.code)
        return n_examples, measured.example_tokens

    def get(self, organization_id: str, job_id: str) -> JobRow:
        with self.db.session() as session:
            row = session.scalar(select(JobRow).where(JobRow.id == job_id, JobRow.organization_id == organization_id))
        if row is None:
            raise job_not_found(job_id)
        return row

    def list(
        self, organization_id: str, limit: int, after: str | None, metadata: dict[str, str] | None = None
    ) -> tuple[list[JobRow], bool]:
        query = select(JobRow).where(JobRow.organization_id == organization_id)
        for key, value in (metadata or {}).items():
            query = query.where(JobRow.job_metadata[key].as_string() == value)
        if after:
            query = query.where(JobRow.seq < self.get(organization_id, after).seq)
        return fetch_page(self.db, query.order_by(JobRow.seq.desc()), limit)

    def events(self, organization_id: str, job_id: str, limit: int, after: str | None) -> tuple[list[EventRow], bool]:
        return self._job_page(organization_id, job_id, EventRow, "Event", limit, after)

    def checkpoints(
        self, organization_id: str, job_id: str, limit: int, after: str | None
    ) -> tuple[list[CheckpointRow], bool]:
        return self._job_page(organization_id, job_id, CheckpointRow, "Checkpoint", limit, after)

    def _job_page(self, organization_id: str, job_id: str, table, kind: str, limit: int, after: str | None):
        """A newest-first page of a job's events or checkpoints, after the cursor id `after`."""
        self.get(organization_id, job_id)
        query = select(table).where(table.job_id == job_id)
        if after:
            with self.db.session() as session:
                cursor = session.scalar(select(table.seq).where(table.id == after))
            if cursor is None:
                raise not_found(kind, after, param="after")
            query = query.where(table.seq < cursor)
        return fetch_page(self.db, query.order_by(table.seq.desc()), limit)

    def cancel(self, organization_id: str, job_id: str) -> JobRow:
        return jobs.cancel(self.db, organization_id, job_id)

    def pause(self, organization_id: str, job_id: str) -> JobRow:
        return jobs.pause(self.db, organization_id, job_id)

    def resume(self, organization_id: str, job_id: str) -> JobRow:
        return jobs.resume(self.db, organization_id, job_id)


def check_method(params: JobCreateParams) -> None:
    """400 for a `method` whose parts disagree: hyperparameters of one method on a job of another."""
    method = params.method
    if method is None:
        return
    other = "dpo" if method.type == "supervised" else "supervised"
    if getattr(method, other) is not None:
        raise OpenFTError(400, f"method.{other} is given, but method.type is '{method.type}'.", param=f"method.{other}")
    if method.type == "dpo" and params.hyperparameters is not None:
        raise OpenFTError(
            400,
            "hyperparameters is only for supervised jobs; give a DPO job's in method.dpo.hyperparameters.",
            param="hyperparameters",
        )


def job_object(row: JobRow) -> FineTuningJob:
    """The job as OpenAI shows it: `method` echoes the hyperparameters ("auto" until the worker
    resolves them); the deprecated top-level `hyperparameters` is null on a DPO job, as OpenAI's."""
    auto = {"batch_size": "auto", "learning_rate_multiplier": "auto", "n_epochs": "auto"}
    if row.method == "dpo":
        auto = {"beta": "auto", **auto}
    hyperparameters = {**auto, **row.hyperparameters}
    return FineTuningJob(
        id=row.id,
        created_at=row.created_at,
        error=JobError(**row.error) if row.error else None,
        fine_tuned_model=row.fine_tuned_model,
        finished_at=row.finished_at,
        hyperparameters=None if row.method == "dpo" else hyperparameters,
        model=row.model,
        organization_id=row.organization_id,
        result_files=row.result_files,
        seed=row.seed,
        status=row.status,
        trained_tokens=row.trained_tokens,
        training_file=row.training_file,
        validation_file=row.validation_file,
        estimated_finish=row.estimated_finish,
        integrations=[],
        metadata=row.job_metadata,
        method={"type": row.method, row.method: {"hyperparameters": hyperparameters}},
        user_provided_suffix=row.suffix,
    )


def event_object(row: EventRow) -> FineTuningJobEvent:
    return FineTuningJobEvent(
        id=row.id, created_at=row.created_at, level=row.level, message=row.message, data=row.data, type=row.type
    )


def checkpoint_object(row: CheckpointRow) -> FineTuningJobCheckpoint:
    return FineTuningJobCheckpoint(
        id=row.id,
        created_at=row.created_at,
        fine_tuned_model_checkpoint=row.fine_tuned_model_checkpoint,
        fine_tuning_job_id=row.job_id,
        metrics=row.metrics,
        step_number=row.step_number,
    )
