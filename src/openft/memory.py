"""The memory of one host, shared by the processes that hold it: the inference engine (the weights
of the bases it keeps loaded) and the training jobs (their memory plans, trainer/plan.py).

Planned alone, a trainer took 90% of the host's memory and the engine up to half of it, at the
same time. So each of them records what it holds in a file of its own in a folder of the host
(`<host dir>/memory/`) and plans into what the others do not hold: a worker claims a job only if
its plan fits what is left (runner/worker.py), the engine loads a base only into what is left
(inference/local.py), unloading its least recently used bases first as for its own budget.

A record is a file per process, `<role>-<pid>-<token>`, holding `{"device", "held", "wanted"}`
as JSON and exclusively `flock`ed by its process for as long as it lives. A record whose lock can
be taken belongs to a dead process (the kernel drops the locks of a process that ends, however
it ends): it is not counted, and removed. Records are read and written under one more lock, the
folder's `.lock`, so that a process checks what is left and records what it takes in one step:
two processes never take the same room.

The engine's loaded bases are a cache; a job is a commitment. A worker whose next job would fit
if the others held less records what it needs as `wanted`, and an idle engine that holds enough
to make up the difference unloads bases until it is made up (`wanted_from_me`). Without that, a
job that needs what an idle engine keeps would wait for as long as the engine runs.

Devices: "cpu" (the host's RAM, or its cgroup's limit) and "cuda" (the GPUs, counted as one
device: an engine on GPU 0 counts against a job on GPU 1, which errs on the side of room).
"""

from __future__ import annotations

import fcntl
import json
import os
import secrets
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Record:
    device: str
    held: int  # bytes the process holds, or has reserved
    wanted: int  # bytes of room it waits for (what it needs the others to leave it)


class HostMemory:
    """This process's record of the memory it holds on `device`, whose size is `total` bytes.
    `directory` None: nothing is shared (a trainer that runs on another host, under Ray)."""

    def __init__(self, directory: Path | None, role: str, device: str, total: int):
        self.directory = Path(directory) if directory else None
        self.device, self.total = device, total
        self.name = f"{role}-{os.getpid()}-{secrets.token_hex(4)}"
        self.held = 0
        self._file = None
        self._folder_lock = None
        self._depth = 0
        self._thread_lock = threading.RLock()

    @contextmanager
    def deciding(self) -> Iterator[None]:
        """Holds the folder's lock: what is left, read inside, stays left until recorded."""
        with self._thread_lock:
            if self._depth == 0 and self.directory is not None:
                self.directory.mkdir(parents=True, exist_ok=True)
                self._folder_lock = open(self.directory / ".lock", "a")
                fcntl.flock(self._folder_lock, fcntl.LOCK_EX)
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
                if self._depth == 0 and self._folder_lock is not None:
                    self._folder_lock.close()  # drops the lock
                    self._folder_lock = None

    def room(self) -> int:
        """Bytes of the device that the other processes of the host do not hold: the most this
        process may hold."""
        with self.deciding():
            return self.total - sum(record.held for record in self._others())

    def record(self, held: int, wanted: int = 0) -> None:
        """Say what this process holds now, and what room it waits for."""
        self.held = held
        if self.directory is None:
            return
        with self.deciding():
            if self._file is None:
                self._file = open(self.directory / self.name, "w")
                fcntl.flock(self._file, fcntl.LOCK_EX)
            self._file.seek(0)
            self._file.truncate()
            self._file.write(json.dumps({"device": self.device, "held": held, "wanted": wanted}))
            self._file.flush()

    def wanted_from_me(self) -> int:
        """Bytes this process should give back so that a process waiting for room gets it: the
        largest shortfall of a waiting process that what this process holds covers; 0 if none."""
        if self.directory is None or self.held == 0:
            return 0
        with self.deciding():
            others = self._others()
        wanted = 0
        for waiting in others:
            held_by_the_rest = self.held + sum(other.held for other in others if other is not waiting)
            shortfall = waiting.wanted - (self.total - held_by_the_rest)
            if 0 < shortfall <= self.held:
                wanted = max(wanted, shortfall)
        return wanted

    def close(self) -> None:
        if self._file is not None:
            self._file.close()  # drops the lock
            (self.directory / self.name).unlink(missing_ok=True)
            self._file = None

    def _others(self) -> list[Record]:
        """The records of the other live processes on this device (under the folder's lock)."""
        if self.directory is None or not self.directory.is_dir():
            return []
        records = []
        for path in self.directory.iterdir():
            if path.name.startswith(".") or path.name == self.name:
                continue
            try:
                with open(path) as other:
                    try:
                        fcntl.flock(other, fcntl.LOCK_SH | fcntl.LOCK_NB)
                    except BlockingIOError:  # its process lives
                        record = Record(**json.loads(other.read()))
                        if record.device == self.device:
                            records.append(record)
                        continue
                    path.unlink(missing_ok=True)  # its process is gone
            except (OSError, ValueError, TypeError):
                continue  # removed meanwhile, or not a record
        return records
