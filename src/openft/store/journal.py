"""A write-ahead journal: entries a process has promised to write to the database, on disk before
the promise is made, so that a crash between the promise and the transaction loses none.

Each process appends to a file of its own in a folder of the data dir and holds an exclusive
`flock` on it while it lives. The kernel drops the lock when the process dies, however it dies
(kill -9 included), so a file that another process can lock belongs to a dead one: `orphans`
hands over what it holds that was never written, and deletes it.

An append is one `write` to a file opened with O_APPEND, without fsync: what a process wrote is
the kernel's once the call returns, so the process dying loses nothing, as with SQLite's WAL under
`synchronous=NORMAL`, which the store uses. A power cut may lose the last moments of both.

Lines are `{"ticket": n, "entry": {...}}`, tickets counting up, and `{"written": n}`: every entry
up to ticket n is in the database. The writer says so after each transaction, so that nothing is
written twice (a stored completion deleted since would come back); once it has caught up, the
file is emptied instead, so it only ever holds what the writer is behind by."""

from __future__ import annotations

import fcntl
import json
import logging
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from openft import ids

log = logging.getLogger("openft.journal")


class Journal:
    def __init__(self, directory: Path):
        self.directory = directory
        self._lock = threading.Lock()
        self._fd: int | None = None
        self._path: Path | None = None
        self.last_ticket = 0
        self._written = 0

    def append(self, entry: dict[str, Any]) -> int:
        """Journals `entry`; returns its ticket."""
        serialized = json.dumps(entry)
        with self._lock:
            if self._fd is None:
                self._open()
            self.last_ticket += 1
            _write_all(self._fd, f'{{"ticket": {self.last_ticket}, "entry": {serialized}}}\n'.encode())
            return self.last_ticket

    def written(self, ticket: int) -> None:
        """Every entry up to `ticket` is in the database (or was given up: the caller logged it)."""
        with self._lock:
            self._written = ticket
            if self._fd is None:
                return
            if ticket == self.last_ticket:
                os.ftruncate(self._fd, 0)
            else:
                _write_all(self._fd, f'{{"written": {ticket}}}\n'.encode())

    def close(self) -> None:
        """Releases the file, and deletes it if everything in it was written; what was not is
        the next start's to write."""
        with self._lock:
            if self._fd is None:
                return
            if self._written == self.last_ticket:
                self._path.unlink()
            os.close(self._fd)  # and with it the lock
            self._fd = None

    def _open(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        name = f"{os.getpid()}-{ids.random_token(8)}"
        # Locked under a name `orphans` ignores, then renamed: it must never see the file unlocked.
        creating = self.directory / f"{name}.new"
        fd = os.open(creating, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX)
        self._path = self.directory / f"{name}.jsonl"
        os.rename(creating, self._path)
        self._fd = fd


def orphans(directory: Path) -> Iterator[list[dict[str, Any]]]:
    """The entries of each dead process's journal that were never written, one journal at a
    time; each is deleted once the caller asks for the next (a caller that dies before leaves it
    to the next start)."""
    for path in sorted(directory.glob("*.jsonl")) if directory.is_dir() else ():
        try:
            handle = open(path, "rb")  # noqa: SIM115 (held across the yield, closed below)
        except FileNotFoundError:  # another process took it first
            continue
        try:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:  # its process is alive
                continue
            yield _unwritten(path, handle.read().splitlines())
            path.unlink(missing_ok=True)
        finally:
            handle.close()


def _unwritten(path: Path, lines: list[bytes]) -> list[dict[str, Any]]:
    entries: dict[int, dict[str, Any]] = {}
    written = 0
    for number, line in enumerate(lines, 1):
        try:
            item = json.loads(line)
        except ValueError:  # a write the disk could not finish
            log.error("%s line %d is not JSON; skipped: %.200r", path, number, line)
            continue
        if "written" in item:
            written = max(written, item["written"])
        else:
            entries[item["ticket"]] = item["entry"]
    return [entry for ticket, entry in sorted(entries.items()) if ticket > written]


def _write_all(fd: int, data: bytes) -> None:
    while data:
        data = data[os.write(fd, data) :]
