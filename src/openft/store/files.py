"""Files: bytes in the artifact storage under `files/<file id>`, a row in the store. The API's
uploads (services/files.py) and the worker's result files are written the same way, here.

The bytes stream in chunks to a hidden staging file (size and line length checked on the way
when limits are given; sha256 computed), are fsynced, published as `files/<file id>`, and only
then does the row commit. With the default storage (the data dir) the staging file is in
`<data dir>/files` and publishing is a rename; with a remote storage it is staged in
`<data dir>/staging` and uploaded. A rejected file, or a crash at any point, leaves no visible
file; a file's key derives from its id only, never from anything a client sent.
"""

from __future__ import annotations

import hashlib
import io
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from sqlalchemy import select

from openft import ids
from openft.errors import OpenFTError, file_too_large, not_found
from openft.settings import Settings
from openft.storage import Storage
from openft.store.db import Database
from openft.store.tables import FileRow

CHUNK_BYTES = 2**20


def file_key(file_id: str) -> str:
    """The storage key of a file: derived from its id only, never from anything the client sent."""
    return f"files/{file_id}"


@dataclass(frozen=True)
class Staged:
    path: Path
    size: int
    sha256: str


class FileStore:
    def __init__(self, settings: Settings, db: Database):
        self.db = db
        self.storage = Storage.for_settings(settings)
        self.staging_dir = self.storage.local_path("files") or settings.data_dir / "staging"

    def get(self, organization_id: str, file_id: str) -> FileRow:
        with self.db.session() as session:
            row = session.scalar(
                select(FileRow).where(FileRow.id == file_id, FileRow.organization_id == organization_id)
            )
        if row is None:
            raise not_found("File", file_id)
        return row

    def fetch(self, row: FileRow, cache_dir: Path) -> Path:
        """A path on this host holding the file's bytes (downloaded into `cache_dir` from a
        remote storage): what the trainer subprocess reads."""
        return self.storage.fetch(file_key(row.id), cache_dir)

    def store(self, organization_id: str, filename: str, purpose: str, content: bytes, status: str) -> FileRow:
        """Store bytes the server made itself (a job's result file): no limits apply."""
        staged = self.stage(io.BytesIO(content))
        try:
            return self.publish(staged, organization_id, filename, purpose, status)
        finally:
            staged.path.unlink(missing_ok=True)  # already renamed away when published

    def stage(self, source: BinaryIO, max_bytes: int | None = None, max_line_bytes: int | None = None) -> Staged:
        """Copy `source` to a hidden, fsynced staging file; the caller removes it if it does not publish it."""
        self.staging_dir.mkdir(parents=True, exist_ok=True)
        handle = tempfile.NamedTemporaryFile(dir=self.staging_dir, prefix=".upload-", suffix=".part", delete=False)
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
        return Staged(path, size, digest.hexdigest())

    def publish(
        self,
        staged: Staged,
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
