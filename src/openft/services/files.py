"""Uploaded files: bytes in the artifact storage under `files/<file id>`, metadata in the store.

An upload streams in chunks to a hidden staging file (size and, for fine-tune files, line length
checked on the way; sha256 computed), is fsynced, validated, published as `files/<file id>`, and
only then gets its row. With the default storage (the data dir) the staging file is in
`<data dir>/files` and publishing is a rename; with a remote storage it is staged in
`<data dir>/staging` and uploaded. A rejected upload, or a crash at any point, leaves no visible
file; the client's filename is only ever a label, never part of a path.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import tempfile
import time
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from sqlalchemy import select

from openft import ids
from openft.data.validate import DataIssue, ValidationReport, scan_chat_jsonl
from openft.errors import OpenFTError, file_too_large, not_found
from openft.protocol.files import FileObject
from openft.settings import Settings
from openft.storage import Storage
from openft.store.db import Database
from openft.store.tables import FileRow

PURPOSES = ("assistants", "batch", "fine-tune", "vision", "user_data", "evals")
MAX_LISTED_ISSUES = 5
CHUNK_BYTES = 2**20
MAX_FILENAME_CHARS = 255


def format_error_message(report: ValidationReport) -> str | None:
    """None when `report` found no error, else a message naming the offending lines, each with
    its stable code: "Line 3: [invalid_json] invalid JSON: …" (codes: `openft.data.validate`)."""
    if report.ok:
        return None
    return "Invalid file format for fine-tuning. " + _listed(report.errors)


def format_warnings(report: ValidationReport, n_examples: int) -> str | None:
    """An accepted fine-tune file's `status_details`: its warnings, the same way (None if none)."""
    if not report.warnings:
        return None
    return f"{n_examples} example(s) accepted with warnings. " + _listed(report.warnings)


def _listed(issues: list[DataIssue]) -> str:
    shown = []
    for issue in issues[:MAX_LISTED_ISSUES]:
        where = f"Line {issue.line}: " if issue.line is not None else ""
        shown.append(f"{where}[{issue.code}] {issue.message.removeprefix(where)}")
    if more := len(issues) - len(shown):
        shown.append(f"... and {more} more.")
    return " ".join(shown)


class FileService:
    def __init__(self, settings: Settings, db: Database):
        self.settings = settings
        self.db = db
        self.storage = Storage.for_settings(settings)

    def create(self, organization_id: str, filename: str | None, purpose: str, source: BinaryIO) -> FileRow:
        """Store an upload read from `source`, within the size limit; a fine-tune file must also
        keep within the line limit and be valid chat JSONL."""
        if purpose not in PURPOSES:
            raise OpenFTError(400, f"'{purpose}' is not one of {list(PURPOSES)} - 'purpose'", param="purpose")
        fine_tune = purpose == "fine-tune"
        max_line_bytes = self.settings.max_line_bytes if fine_tune else None
        staged = self._stage(source, self.settings.max_upload_bytes, max_line_bytes)
        details = None
        try:
            if fine_tune:
                # The content decides, not the name: the legacy 0.28 client uploads as "file".
                with open(staged.path, "rb") as lines:
                    report, n_examples = scan_chat_jsonl(lines)
                if problem := format_error_message(report):
                    raise OpenFTError(400, problem, param="file", code="invalid_file_format")
                details = format_warnings(report, n_examples)
            return self._publish(staged, organization_id, sanitize_filename(filename), purpose, "processed", details)
        finally:
            staged.path.unlink(missing_ok=True)  # already renamed away when published

    def store(self, organization_id: str, filename: str, purpose: str, content: bytes, status: str) -> FileRow:
        """Store bytes the server made itself (a job's result file): no limits apply."""
        staged = self._stage(io.BytesIO(content), None, None)
        try:
            return self._publish(staged, organization_id, sanitize_filename(filename), purpose, status)
        finally:
            staged.path.unlink(missing_ok=True)

    def _stage(self, source: BinaryIO, max_bytes: int | None, max_line_bytes: int | None) -> _Staged:
        staging_dir = self.storage.local_path("files") or self.settings.data_dir / "staging"
        staging_dir.mkdir(parents=True, exist_ok=True)
        handle = tempfile.NamedTemporaryFile(dir=staging_dir, prefix=".upload-", suffix=".part", delete=False)
        path = Path(handle.name)
        digest, size = hashlib.sha256(), 0
        lines = _LineLimit(max_line_bytes) if max_line_bytes else None
        try:
            with handle:
                while chunk := source.read(CHUNK_BYTES):
                    size += len(chunk)
                    if max_bytes is not None and size > max_bytes:
                        raise file_too_large(max_bytes)
                    if lines:
                        lines.feed(chunk)
                    digest.update(chunk)
                    handle.write(chunk)
                handle.flush()
                os.fsync(handle.fileno())
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        return _Staged(path, size, digest.hexdigest())

    def _publish(
        self,
        staged: _Staged,
        organization_id: str,
        filename: str,
        purpose: str,
        status: str,
        details: str | None = None,
    ) -> FileRow:
        """Publish the staged bytes under their id-derived key, then commit the row."""
        file_id = ids.file_id()
        key = file_key(file_id)
        self.storage.put(staged.path, key, move=True)
        row = FileRow(
            id=file_id,
            organization_id=organization_id,
            bytes=staged.size,
            created_at=int(time.time()),
            filename=filename,
            purpose=purpose,
            status=status,
            status_details=details,
            location=self.storage.location(key),
            sha256=staged.sha256,
        )
        try:
            with self.db.session() as session:
                session.add(row)
        except BaseException:
            self.storage.delete(key)
            raise
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
        return self.read(self.get(organization_id, file_id))

    def read(self, row: FileRow) -> bytes:
        with self.open(row) as stream:
            return stream.read()

    def open(self, row: FileRow) -> BinaryIO:
        return self.storage.open(file_key(row.id))

    def fetch(self, row: FileRow, cache_dir: Path) -> Path:
        """A path on this host holding the file's bytes (downloaded into `cache_dir` from a
        remote storage): what the trainer subprocess reads."""
        return self.storage.fetch(file_key(row.id), cache_dir)

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
        self.storage.delete(file_key(row.id))


@dataclass(frozen=True)
class _Staged:
    path: Path
    size: int
    sha256: str


class _LineLimit:
    """Fails the upload at the first line longer than `limit` bytes, as the chunks stream by.
    Lines are counted as `validate_chat_jsonl` counts them (1-based, split on newline)."""

    def __init__(self, limit: int):
        self.limit = limit
        self.line = 1
        self.length = 0

    def feed(self, chunk: bytes) -> None:
        parts = chunk.split(b"\n")
        self.length += len(parts[0])
        self._check()
        for part in parts[1:]:
            self.line += 1
            self.length = len(part)
            self._check()

    def _check(self) -> None:
        if self.length > self.limit:
            raise OpenFTError(
                400,
                f"Invalid file format for fine-tuning. Line {self.line}: longer than {self.limit} bytes, the longest "
                "line this server accepts (its OPENFT_MAX_LINE_BYTES setting raises the limit).",
                param="file",
                code="line_too_long",
            )


def sanitize_filename(name: str | None) -> str:
    """The client's filename made safe to show: its last path component, without control or
    format characters, at most 255 characters. It labels the file; it never names a path."""
    base = re.split(r"[/\\]", name or "")[-1]
    cleaned = "".join(ch for ch in base if not unicodedata.category(ch).startswith("C")).strip()
    return cleaned[:MAX_FILENAME_CHARS] if cleaned not in ("", ".", "..") else "file"


def file_key(file_id: str) -> str:
    """The storage key of a file: derived from its id only, never from anything the client sent."""
    return f"files/{file_id}"


def file_object(row: FileRow) -> FileObject:
    return FileObject(
        id=row.id,
        bytes=row.bytes,
        created_at=row.created_at,
        filename=row.filename,
        purpose=row.purpose,
        status=row.status,
        status_details=row.status_details,
    )
