"""`POST /v1/openft/exports` and `openft models export`: a model taken out of openft.

The name may be a fine-tune (`ft:…`), one of its checkpoints (`ft:…:ckpt-step-N` or the
checkpoint's `ftckpt_…` id) or a base (an OpenAI alias means the base it points at). Only the
organization that owns a fine-tune may export it: another organization's fine-tune or
checkpoint is a 404, as for a name that does not exist.

Creating an export checks the request and gathers what the export needs on any host
(`ExportDetails`: the base, the adapter's key, the model card's facts) onto a queued row, and
answers at once; an exporter runs it in a process of its own (runner/exporter.py), at most
`OPENFT_EXPORTS_PER_HOST` per host, so torch never enters the server's process and no request
waits minutes for a GGUF. The client polls the export, then fetches its tar, built with fixed
metadata (export/archive.py) so that the same fine-tune downloads as the same bytes but for the
card's `exported_at`. `openft models export` without `--base-url` runs the same export process
on its data dir, in one of the host's export slots, into the folder it names.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

from sqlalchemy import select

from openft import ids
from openft.data.validate import validate_chat_jsonl
from openft.errors import OpenFTError, model_not_found, not_found
from openft.eval.arms import training_system_message
from openft.export.spec import DEFAULT_QUANTIZATION, ExportDetails, file_stem
from openft.protocol.exports import Export, ExportCreateParams, ExportDeleted
from openft.runner import exports
from openft.runner.artifacts import adapter_key
from openft.runner.exporter import ExportFailed, ExportKilled, HostSlots, result_key, results_key, run_export
from openft.services.files import FileService
from openft.services.models import ModelService
from openft.settings import Settings
from openft.storage import Storage
from openft.store.db import Database
from openft.store.tables import CheckpointRow, ExportRow, FileRow, JobRow, ModelRow

CHUNK = 2**20
# The training record's host paths become what they stand for, or go (the cores' lock folder, the
# parent fine-tune's adapter on the training host).
_PATH_FIELDS = ("base_model_path", "training_file", "validation_file", "output_dir", "cores_dir", "init_adapter")


@dataclass(frozen=True)
class Target:
    """What a name exports: its model row, and for a fine-tune its job and checkpoint."""

    model: ModelRow
    job: JobRow | None
    checkpoint: CheckpointRow | None


@dataclass(frozen=True)
class Result:
    """A succeeded export's tar in the artifact storage, as a download."""

    storage: Storage
    key: str
    filename: str
    size: int

    def headers(self) -> dict[str, str]:
        return {"Content-Disposition": f'attachment; filename="{self.filename}"', "Content-Length": str(self.size)}

    def chunks(self) -> Iterator[bytes]:
        with self.storage.open(self.key) as reader:
            while chunk := reader.read(CHUNK):
                yield chunk


def export_object(row: ExportRow) -> Export:
    return Export(
        id=row.id,
        created_at=row.created_at,
        model=row.model,
        format=row.format,
        quantization=row.quantization,
        status=row.status,
        finished_at=row.finished_at,
        error=row.error,
        filename=row.filename,
        bytes=row.bytes,
    )


class ExportService:
    def __init__(self, settings: Settings, db: Database, models: ModelService, files: FileService):
        self.settings = settings
        self.db = db
        self.models = models
        self.files = files
        self.storage = Storage.for_settings(settings)

    def create(self, organization_id: str, params: ExportCreateParams) -> ExportRow:
        """Queue an export of `params.model` (400 for a format it cannot have, 404 for a name the
        organization cannot see)."""
        details = self._details(organization_id, params.model, params.format, params.quantization)
        row = ExportRow(
            id=ids.export_id(),
            organization_id=organization_id,
            created_at=int(time.time()),
            model=params.model,
            format=params.format,
            quantization=details.quantization,
            status="queued",
            details=details.to_dict(),
        )
        with self.db.session() as session:
            session.add(row)
        return row

    def get(self, organization_id: str, export_id: str) -> ExportRow:
        with self.db.session() as session:
            row = session.scalar(
                select(ExportRow).where(ExportRow.id == export_id, ExportRow.organization_id == organization_id)
            )
        if row is None:
            raise not_found("export", export_id, param="export_id")
        return row

    def result(self, organization_id: str, export_id: str) -> Result:
        """A succeeded export's tar; 409 while it is queued or running, or when it failed."""
        row = self.get(organization_id, export_id)
        if row.status != "succeeded":
            raise OpenFTError(
                409,
                f"Export {export_id} is {row.status}: its content exists once it has succeeded.",
                param="export_id",
                code="export_not_ready",
            )
        return Result(self.storage, result_key(row.id, row.filename), row.filename, row.bytes)

    def delete(self, organization_id: str, export_id: str) -> ExportDeleted:
        """Delete an export and its tar; a running one's exporter stops it."""
        if exports.remove(self.db, organization_id, export_id) is None:
            raise not_found("export", export_id, param="export_id")
        self.storage.delete(results_key(export_id))
        return ExportDeleted(id=export_id, deleted=True)

    def owner(self, name: str) -> str:
        """The organization whose view exports `name`: a fine-tune's or checkpoint's owner, else
        the local one (bases are everyone's). For trusted local callers: the CLI on its data dir."""
        if name.startswith("ftckpt_"):
            with self.db.session() as session:
                checkpoint = select(CheckpointRow.job_id).where(CheckpointRow.id == name).scalar_subquery()
                job = session.scalar(select(JobRow).where(JobRow.id == checkpoint))
            return job.organization_id if job else self.settings.organization_id
        return self.models.owner(name) or self.settings.organization_id

    def export_to(self, organization_id: str, name: str, format: str, quantization: str | None, output: Path) -> Path:
        """Export `name` into the folder `output` (created whole, or not at all), here and now, in
        one of this host's export slots (waiting for one)."""
        if output.exists():
            raise OpenFTError(400, f"{output} already exists; choose another output path or remove it.")
        details = self._details(organization_id, name, format, quantization)
        slots = HostSlots(self.settings.export_slots_dir, self.settings.exports_per_host)
        with slots.wait(), tempfile.TemporaryDirectory(prefix="openft-export-") as scratch:
            try:
                run_export(self.settings, self.storage, details, output, Path(scratch))
            except ExportFailed as failed:
                status = 400 if failed.code == "unsupported_export" else 500
                kind = "invalid_request_error" if status == 400 else "server_error"
                raise OpenFTError(status, failed.message, param="format", code=failed.code, type=kind) from None
            except ExportKilled as killed:
                raise OpenFTError(500, str(killed), type="server_error") from None
        return output

    def target(self, organization_id: str, name: str) -> Target:
        """The model `name` means to `organization_id`: 404 for a name it cannot see."""
        with self.db.session() as session:
            if name.startswith("ftckpt_"):
                checkpoint = session.scalar(select(CheckpointRow).where(CheckpointRow.id == name))
                job = checkpoint and session.scalar(select(JobRow).where(JobRow.id == checkpoint.job_id))
                if job is None or job.organization_id != organization_id:
                    raise model_not_found(name)
                name = checkpoint.fine_tuned_model_checkpoint
        model = self.models.get(organization_id, name)
        if model.job_id is None:
            return Target(model, None, None)
        with self.db.session() as session:
            job = session.scalar(select(JobRow).where(JobRow.id == model.job_id))
            checkpoint = session.scalar(
                select(CheckpointRow).where(
                    CheckpointRow.job_id == model.job_id, CheckpointRow.fine_tuned_model_checkpoint == model.id
                )
            )
        return Target(model, job, checkpoint)

    # -----------------------------------------------------------------------------------------
    # what an export needs

    def _details(self, organization_id: str, name: str, format: str, quantization: str | None) -> ExportDetails:
        if quantization is not None and format != "gguf":
            raise OpenFTError(
                400, f"quantization applies to the gguf format only, not to {format}.", param="quantization"
            )
        target = self.target(organization_id, name)
        model, job = target.model, target.job
        if format == "peft" and model.adapter_key is None:
            raise OpenFTError(
                400,
                f"The model `{name}` is a base model: it has no adapter to export as peft. "
                "Export it as merged or gguf.",
                param="format",
            )
        return ExportDetails(
            format=format,
            model=model.id,
            base_model=model.base_model,
            adapter_key=model.adapter_key,
            quantization=(quantization or DEFAULT_QUANTIZATION) if format == "gguf" else None,
            folder_name=f"{file_stem(model.id)}-{format}",
            mtime=model.created,
            card=self._card(target),
            training_config=self._training_config(job) if job and format == "peft" else None,
            system_message=self._system_message(job) if job and format == "gguf" else None,
        )

    def _card(self, target: Target) -> dict:
        card = {
            "openft_version": version("openft"),
            "exported_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        job, checkpoint = target.job, target.checkpoint
        if job is None:
            return card
        card["job"] = {
            "id": job.id,
            "model": job.model,
            "seed": job.seed,
            "hyperparameters": job.hyperparameters,
            "trained_tokens": job.trained_tokens,
            "training_file": self._file(job, job.training_file),
            "validation_file": self._file(job, job.validation_file) if job.validation_file else None,
        }
        if checkpoint is not None:
            card["metrics"] = checkpoint.metrics
            if target.model.id != job.planned_model_name:
                card["checkpoint_step"] = checkpoint.step_number
        return card

    def _file(self, job: JobRow, file_id: str) -> dict:
        """The digest of a file the job trained on (the row keeps the upload's sha256)."""
        with self.db.session() as session:
            row = session.scalar(
                select(FileRow).where(FileRow.id == file_id, FileRow.organization_id == job.organization_id)
            )
        if row is None:
            return {"id": file_id, "sha256": None}
        return {"id": row.id, "filename": row.filename, "bytes": row.bytes, "sha256": row.sha256}

    def _training_config(self, job: JobRow) -> dict | None:
        """The run's resolved config (saved next to its final adapter), host paths replaced by
        what they stand for; None while the job has not finished."""
        key = f"{adapter_key(job.id)}/training_config.json"
        if not self.storage.exists(key):
            return None
        with self.storage.open(key) as stream:
            config = json.load(stream)
        config = {key: value for key, value in config.items() if key not in _PATH_FIELDS}
        files = {"training_file": job.training_file, "validation_file": job.validation_file}
        return {"base_model": job.base_model, **files, **config}

    def _system_message(self, job: JobRow) -> str | None:
        """The system message the training file uses most: the Modelfile's commented SYSTEM."""
        try:
            row = self.files.get(job.organization_id, job.training_file)
        except OpenFTError:
            return None  # the file was deleted since
        return training_system_message(validate_chat_jsonl(self.files.read(row)).examples)
