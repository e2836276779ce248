"""`openft models export` and `GET /v1/openft/models/{model}/export`: a model taken out of openft.

The name may be a fine-tune (`ft:…`), one of its checkpoints (`ft:…:ckpt-step-N` or the
checkpoint's `ftckpt_…` id) or a base (an OpenAI alias means the base it points at). Like every
fine-tune route, another organization's fine-tune or checkpoint is a 404, as for a name that
does not exist. The service gathers what the export needs (the adapter fetched to this host,
the base's folder, the facts of the model card) into an `ExportSpec` and runs
`python -m openft.export spec.json` (openft/export): torch never enters the server's process.

Over HTTP the export is streamed as an uncompressed tar (safetensors and GGUF do not compress)
of one folder, built with fixed metadata (the model's creation time as every entry's mtime, root
ownership, sorted names), so the same fine-tune downloads as the same bytes except for the
card's `exported_at`. The folder is built before the first byte is sent, so a failed export is
an error response, never a truncated archive, and it is removed once sent.
"""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

from sqlalchemy import select

from openft.data.validate import validate_chat_jsonl
from openft.errors import OpenFTError, model_not_found
from openft.eval.arms import training_system_message
from openft.export.spec import DEFAULT_QUANTIZATION, ExportSpec, file_stem
from openft.processes import die_with_parent
from openft.runner.artifacts import adapter_key
from openft.services.files import FileService
from openft.services.models import ModelService
from openft.settings import Settings
from openft.storage import Storage
from openft.store.db import Database
from openft.store.tables import CheckpointRow, FileRow, JobRow, ModelRow

log = logging.getLogger("openft.exports")
CHUNK = 2**20
BLOCK = tarfile.BLOCKSIZE
# The training record's host paths become what they stand for, or go (the cores' lock folder, the
# parent fine-tune's adapter on the training host).
_PATH_FIELDS = ("base_model_path", "training_file", "validation_file", "output_dir", "cores_dir", "init_adapter")


@dataclass(frozen=True)
class Target:
    """What a name exports: its model row, and for a fine-tune its job and checkpoint."""

    model: ModelRow
    job: JobRow | None
    checkpoint: CheckpointRow | None


@dataclass
class Archive:
    """An export folder, streamed as a tar of `folder_name/…` and removed afterwards."""

    workdir: Path
    folder: Path
    folder_name: str
    mtime: int

    @property
    def filename(self) -> str:
        return f"{self.folder_name}.tar"

    def members(self) -> list[tuple[bytes, Path]]:
        """(tar header, file) for every file, in name order."""
        members = []
        for path in sorted(p for p in self.folder.rglob("*") if p.is_file()):
            info = tarfile.TarInfo(f"{self.folder_name}/{path.relative_to(self.folder).as_posix()}")
            info.size, info.mtime, info.mode = path.stat().st_size, self.mtime, 0o644
            members.append((info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape"), path))
        return members

    def headers(self) -> dict[str, str]:
        return {"Content-Disposition": f'attachment; filename="{self.filename}"', "Content-Length": str(self.size())}

    def size(self) -> int:
        return sum(len(header) + _padded(path.stat().st_size) for header, path in self.members()) + 2 * BLOCK

    def chunks(self) -> Iterator[bytes]:
        try:
            for header, path in self.members():
                yield header
                with open(path, "rb") as reader:
                    while chunk := reader.read(CHUNK):
                        yield chunk
                size = path.stat().st_size
                yield b"\0" * (_padded(size) - size)
            yield b"\0" * (2 * BLOCK)  # the end-of-archive marker
        finally:
            self.close()

    def close(self) -> None:
        shutil.rmtree(self.workdir, ignore_errors=True)


def _padded(size: int) -> int:
    return -(-size // BLOCK) * BLOCK


class ExportService:
    def __init__(self, settings: Settings, db: Database, models: ModelService, files: FileService):
        self.settings = settings
        self.db = db
        self.models = models
        self.files = files
        self.storage = Storage.for_settings(settings)

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
        """Export `name` into the folder `output` (created whole, or not at all)."""
        if output.exists():
            raise OpenFTError(400, f"{output} already exists; choose another output path or remove it.")
        spec = self._spec(organization_id, name, format, quantization, output)
        with tempfile.TemporaryDirectory(prefix="openft-export-") as scratch:
            self._run(spec, Path(scratch) / "spec.json")
        return output

    def archive(self, organization_id: str, name: str, format: str, quantization: str | None) -> Archive:
        """Export `name` into a scratch folder, to be streamed as a tar."""
        exports_dir = self.settings.data_dir / "exports"
        exports_dir.mkdir(parents=True, exist_ok=True)
        workdir = Path(tempfile.mkdtemp(dir=exports_dir))
        try:
            target = self.target(organization_id, name)
            folder_name = f"{file_stem(target.model.id)}-{format}"
            spec = self._spec(organization_id, name, format, quantization, workdir / folder_name, target)
            self._run(spec, workdir / "spec.json")
        except BaseException:
            shutil.rmtree(workdir, ignore_errors=True)
            raise
        return Archive(workdir, workdir / folder_name, folder_name, target.model.created)

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
    # the spec

    def _spec(
        self,
        organization_id: str,
        name: str,
        format: str,
        quantization: str | None,
        output: Path,
        target: Target | None = None,
    ) -> ExportSpec:
        if quantization is not None and format != "gguf":
            raise OpenFTError(
                400, f"quantization applies to the gguf format only, not to {format}.", param="quantization"
            )
        target = target or self.target(organization_id, name)
        model, job = target.model, target.job
        if format == "peft" and model.adapter_key is None:
            raise OpenFTError(
                400,
                f"The model `{name}` is a base model: it has no adapter to export as peft. "
                "Export it as merged or gguf.",
                param="format",
            )
        adapter = self.storage.fetch(model.adapter_key, self.settings.cache_dir) if model.adapter_key else None
        return ExportSpec(
            format=format,
            model=model.id,
            base_model=model.base_model,
            base_model_path=str((self.settings.models_dir / model.base_model).resolve()),
            adapter_path=str(adapter) if adapter else None,
            output_dir=str(output),
            quantization=(quantization or DEFAULT_QUANTIZATION) if format == "gguf" else None,
            card=self._card(target),
            training_config=self._training_config(job) if job and format == "peft" else None,
            system_message=self._system_message(job) if job and format == "gguf" else None,
            threads=self.settings.train_threads,
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

    # -----------------------------------------------------------------------------------------
    # the export process

    def _run(self, spec: ExportSpec, spec_path: Path) -> None:
        spec.write(spec_path)
        done = subprocess.run(
            [sys.executable, "-m", "openft.export", str(spec_path)],
            capture_output=True,
            text=True,
            preexec_fn=die_with_parent if sys.platform.startswith("linux") else None,
        )
        if done.returncode == 2:
            message = json.loads(done.stdout.strip().splitlines()[-1])["error"]
            raise OpenFTError(400, message, param="format", code="unsupported_export")
        if done.returncode != 0:
            log.error("export of %s failed:\n%s", spec.model, done.stderr)
            last = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
            raise OpenFTError(500, f"The export of `{spec.model}` failed: {last}", type="server_error")
