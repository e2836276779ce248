"""Uploaded files: bytes on disk under the data dir, metadata in the store.

A fine-tune upload is validated before anything is stored: a rejected upload leaves no trace.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from sqlalchemy import select

from openft import ids
from openft.data.validate import validate_chat_jsonl
from openft.errors import OpenFTError, not_found
from openft.settings import Settings
from openft.store.db import Database
from openft.store.tables import FileRow

PURPOSES = ("assistants", "batch", "fine-tune", "vision", "user_data", "evals")
MAX_LISTED_ERRORS = 5


def format_error_message(raw: bytes) -> str | None:
    """None when `raw` is valid chat JSONL, else a message naming the offending lines."""
    report = validate_chat_jsonl(raw)
    if report.ok:
        return None
    shown = [issue.message for issue in report.errors[:MAX_LISTED_ERRORS]]
    more = len(report.errors) - len(shown)
    if more:
        shown.append(f"... and {more} more error(s).")
    return "Invalid file format for fine-tuning. " + " ".join(shown)


class FileService:
    def __init__(self, settings: Settings, db: Database):
        self.settings = settings
        self.db = db

    def create(self, organization_id: str, filename: str, purpose: str, content: bytes) -> FileRow:
        if purpose not in PURPOSES:
            raise OpenFTError(
                400, f"'{purpose}' is not one of {list(PURPOSES)} - 'purpose'", param="purpose"
            )
        if purpose == "fine-tune":
            # The content decides, not the name: the legacy 0.28 client uploads as "file".
            problem = format_error_message(content)
            if problem:
                raise OpenFTError(400, problem, param="file", code="invalid_file_format")
        return self.store(organization_id, filename, purpose, content, status="processed")

    def store(self, organization_id: str, filename: str, purpose: str, content: bytes, status: str) -> FileRow:
        file_id = ids.file_id()
        path = self.settings.files_dir / file_id
        _write_durably(path, content)
        row = FileRow(
            id=file_id,
            organization_id=organization_id,
            bytes=len(content),
            created_at=int(time.time()),
            filename=filename,
            purpose=purpose,
            status=status,
            path=str(path),
        )
        with self.db.session() as session:
            session.add(row)
        return row

    def get(self, organization_id: str, file_id: str) -> FileRow:
        with self.db.session() as session:
            row = session.scalar(
                select(FileRow).where(FileRow.id == file_id, FileRow.organization_id == organization_id)
            )
        if row is None:
            raise not_found("File", file_id)
        return row

    def content(self, organization_id: str, file_id: str) -> bytes:
        return Path(self.get(organization_id, file_id).path).read_bytes()

    def list(
        self, organization_id: str, purpose: str | None, limit: int, order: str, after: str | None
    ) -> tuple[list[FileRow], bool]:
        query = select(FileRow).where(FileRow.organization_id == organization_id)
        if purpose:
            query = query.where(FileRow.purpose == purpose)
        descending = order == "desc"
        if after:
            cursor = self.get(organization_id, after).seq
            query = query.where(FileRow.seq < cursor if descending else FileRow.seq > cursor)
        query = query.order_by(FileRow.seq.desc() if descending else FileRow.seq.asc()).limit(limit + 1)
        with self.db.session() as session:
            rows = list(session.scalars(query))
        return rows[:limit], len(rows) > limit

    def delete(self, organization_id: str, file_id: str) -> None:
        row = self.get(organization_id, file_id)
        with self.db.session() as session:
            session.delete(session.merge(row))
        Path(row.path).unlink(missing_ok=True)


def _write_durably(path: Path, content: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_suffix(".part")
    with open(staging, "wb") as handle:
        handle.write(content)
        handle.flush()
        os.fsync(handle.fileno())
    staging.rename(path)
