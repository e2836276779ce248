"""Files as the API sees them: upload (within the size and line limits; a fine-tune file must be
valid chat JSONL), read, list, delete.

An upload is staged, checked and only then published (`store/files.py`: bytes under
`files/<file id>` first, then the row), so a rejected upload, or a crash at any point, leaves no
visible file; the client's filename is only ever a label, never part of a path.
"""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path
from typing import BinaryIO

from sqlalchemy import select

from openft.data.validate import DataIssue, ValidationReport, scan_chat_jsonl
from openft.errors import OpenFTError
from openft.protocol.files import FileObject
from openft.settings import Settings
from openft.store.db import Database
from openft.store.files import FileStore, file_key
from openft.store.pages import fetch_page
from openft.store.tables import FileRow

PURPOSES = ("assistants", "batch", "fine-tune", "vision", "user_data", "evals")
MAX_LISTED_ISSUES = 5
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
        self.store = FileStore(settings, db)
        self.storage = self.store.storage

    def create(self, organization_id: str, filename: str | None, purpose: str, source: BinaryIO) -> FileRow:
        """Store an upload read from `source`, within the size limit; a fine-tune file must also
        keep within the line limit and be valid JSONL of one method (chat, or DPO pairs)."""
        if purpose not in PURPOSES:
            raise OpenFTError(400, f"'{purpose}' is not one of {list(PURPOSES)} - 'purpose'", param="purpose")
        fine_tune = purpose == "fine-tune"
        max_line_bytes = self.settings.max_line_bytes if fine_tune else None
        staged = self.store.stage(source, self.settings.max_upload_bytes, max_line_bytes)
        details = None
        try:
            if fine_tune:
                # The content decides, not the name: the legacy 0.28 client uploads as "file".
                with open(staged.path, "rb") as lines:
                    report, n_examples = scan_chat_jsonl(lines)
                if problem := format_error_message(report):
                    raise OpenFTError(400, problem, param="file", code="invalid_file_format")
                details = format_warnings(report, n_examples)
            return self.store.publish(
                staged, organization_id, sanitize_filename(filename), purpose, "processed", details
            )
        finally:
            staged.path.unlink(missing_ok=True)  # already renamed away when published

    def get(self, organization_id: str, file_id: str) -> FileRow:
        return self.store.get(organization_id, file_id)

    def content(self, organization_id: str, file_id: str) -> bytes:
        return self.read(self.get(organization_id, file_id))

    def read(self, row: FileRow) -> bytes:
        with self.open(row) as stream:
            return stream.read()

    def open(self, row: FileRow) -> BinaryIO:
        return self.storage.open(file_key(row.id))

    def fetch(self, row: FileRow, cache_dir: Path) -> Path:
        """A path on this host holding the file's bytes (see `FileStore.fetch`)."""
        return self.store.fetch(row, cache_dir)

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
        order = FileRow.seq.desc() if descending else FileRow.seq.asc()
        return fetch_page(self.db, query.order_by(order), limit)

    def delete(self, organization_id: str, file_id: str) -> None:
        row = self.get(organization_id, file_id)
        with self.db.session() as session:
            session.delete(session.merge(row))
        self.storage.delete(file_key(row.id))


def sanitize_filename(name: str | None) -> str:
    """The client's filename made safe to show: its last path component, without control or
    format characters, at most 255 characters. It labels the file; it never names a path."""
    base = re.split(r"[/\\]", name or "")[-1]
    cleaned = "".join(ch for ch in base if not unicodedata.category(ch).startswith("C")).strip()
    return cleaned[:MAX_FILENAME_CHARS] if cleaned not in ("", ".", "..") else "file"


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
