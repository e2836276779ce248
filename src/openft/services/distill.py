"""Distill: stored completions, filtered, become a training file (`openft.data.distill` writes
the lines), and through `POST /v1/openft/chat/completions/export` an uploaded file that passed
the data check, a held-out file of stored completions for the eval, and a fine-tuning job, in
one step (the dashboard's "Distill" button)."""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from openft.data.distill import Skipped, Stored, jsonl, preference_line, preferred_from_metadata, supervised_line
from openft.errors import OpenFTError
from openft.protocol.common import Metadata
from openft.protocol.fine_tuning import JobCreateParams
from openft.services.file_checks import FileCheckService
from openft.services.files import FileService, file_object
from openft.services.fine_tuning import FineTuningService, job_object
from openft.services.stored_completions import StoredCompletions
from openft.store.tables import StoredCompletionRow

PAGE = 500
MAX_TIME = 2**53  # Unix seconds: beyond any date, within every database's integer


class Selection(BaseModel):
    """Which stored completions: every filter given must match."""

    model_config = ConfigDict(extra="forbid")

    model: str | None = None
    metadata: Metadata | None = None
    since: int | None = Field(default=None, ge=0, le=MAX_TIME)  # created at or after (Unix seconds)
    until: int | None = Field(default=None, ge=0, le=MAX_TIME)  # created before
    text: str | None = None  # in a message or the reply, any case
    ids: list[str] | None = None
    limit: int | None = Field(default=None, ge=1)


class FineTuneParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str
    suffix: str | None = Field(default=None, max_length=64)
    hyperparameters: dict[str, Any] | None = None


class ExportParams(Selection):
    """Body of POST /v1/openft/chat/completions/export."""

    # Preference pairs: the better reply is this metadata key's value (see openft.data.distill).
    preferred_metadata_key: str | None = None
    # Examples kept out of training (the newest), uploaded apart for the fine-tune's eval.
    held_out: int = Field(default=0, ge=0)
    fine_tune: FineTuneParams | None = None


@dataclass
class Export:
    lines: list[dict[str, Any]] = field(default_factory=list)
    ids: list[str] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)


def export(
    stored: StoredCompletions,
    organization_id: str,
    selection: Selection,
    preferred: Callable[[Stored], dict[str, Any] | None] | None = None,
) -> Export:
    """The training lines of the selected completions, oldest first: supervised, or with
    `preferred` (the better reply of a completion, None when it has none), preference pairs."""
    result = Export()
    after = None
    while selection.limit is None or len(result.lines) < selection.limit:
        rows, more = stored.list(
            organization_id,
            limit=PAGE,
            after=after,
            model=selection.model,
            metadata=selection.metadata,
            since=selection.since,
            until=selection.until,
            text=selection.text,
            ids=selection.ids,
        )
        for row in rows:
            if selection.limit is not None and len(result.lines) >= selection.limit:
                break
            try:
                result.lines.append(_line(_stored(row), preferred))
                result.ids.append(row.id)
            except Skipped as reason:
                result.skipped.append({"id": row.id, "reason": str(reason)})
        if not more:
            break
        after = rows[-1].id
    return result


def _line(stored: Stored, preferred) -> dict[str, Any]:
    if preferred is None:
        return supervised_line(stored)
    better = preferred(stored)
    if better is None:
        raise Skipped("no preferred reply was given")
    return preference_line(stored, better)


def _stored(row: StoredCompletionRow) -> Stored:
    return Stored(row.id, row.request, row.response, row.status, row.completion_metadata)


class DistillService:
    def __init__(
        self, stored: StoredCompletions, files: FileService, checks: FileCheckService, jobs: FineTuningService
    ):
        self.stored = stored
        self.files = files
        self.checks = checks
        self.jobs = jobs

    def export(self, caller, params: ExportParams) -> dict[str, Any]:
        organization_id = caller.organization_id
        key = params.preferred_metadata_key
        preferred = (lambda stored: preferred_from_metadata(stored, key)) if key else None
        result = export(self.stored, organization_id, params, preferred)
        if not result.lines:
            reasons = "; ".join(sorted({s["reason"] for s in result.skipped})) or "none matches the filters"
            raise OpenFTError(400, f"No stored completion makes a training example: {reasons}.")
        if params.held_out >= len(result.lines):
            raise OpenFTError(
                400,
                f"held_out ({params.held_out}) leaves no training example of {len(result.lines)}.",
                param="held_out",
            )
        kept = len(result.lines) - params.held_out
        training = self._upload(organization_id, "distilled.jsonl", "fine-tune", result.lines[:kept])
        held_out = (
            self._upload(organization_id, "distilled-held-out.jsonl", "evals", result.lines[kept:])
            if params.held_out
            else None
        )
        # The data check reads supervised files; preference files are checked by the job.
        check = None
        if not key:
            base = params.fine_tune.model if params.fine_tune else None
            check = self.checks.check(organization_id, training.id, base)
        job = None
        if params.fine_tune and (check is None or check["ok"]):
            metadata = {"distilled": "stored_completions"} | ({"held_out_file": held_out.id} if held_out else {})
            request = params.fine_tune.model_dump(exclude_none=True) | {
                "training_file": training.id,
                "metadata": metadata,
            }
            if key:
                request["method"] = {"type": "dpo"}
            try:
                job_params = JobCreateParams.model_validate(request)
            except ValidationError as error:
                raise OpenFTError(400, f"The fine-tune cannot be created: {error.errors()[0]['msg']}") from None
            job = self.jobs.create(caller, job_params)
        return {
            "object": "openft.chat.completions.export",
            "examples": kept,
            "ids": result.ids[:kept],
            "held_out_ids": result.ids[kept:],
            "skipped": result.skipped,
            "training_file": file_object(training).model_dump(),
            "held_out_file": file_object(held_out).model_dump() if held_out else None,
            "check": check,
            "job": job_object(job).model_dump() if job else None,
        }

    def _upload(self, organization_id: str, filename: str, purpose: str, lines: list[dict[str, Any]]):
        return self.files.create(organization_id, filename, purpose, io.BytesIO(jsonl(lines)))
