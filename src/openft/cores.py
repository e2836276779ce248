"""The CPU cores of one host, shared by the processes that compute on them: training jobs and the
inference engine.

Two torch processes that each run as many OpenMP threads as there are cores do not share the
cores, they collapse: a thread that waits at a barrier for a descheduled sibling spins or
sleeps, and every step waits for the slowest thread (measured on 2 cores: a 2-thread trainer
beside another busy process fell from ~250 to 7-24 tokens/s; bench/README.md). So each process
uses its share of the cores while others are busy too, and all of them while alone.

How a process knows who else is busy: each one has a file in a folder of the data dir
(`<data dir>/cores/`) and holds an exclusive `flock` on it while it computes (the trainer for its
whole run, the engine while it has rows to decode). Between two steps it counts the files whose
lock it cannot take: those are the busy processes. The kernel drops a dead process's lock with
it, so a crash never leaves the others on a smaller share; the file of a dead process is
removed by the next process that finds it unlocked.

The cores a process may use are the fewer of `os.sched_getaffinity` (`taskset`'s or a
cpuset's limit) and its cgroup's CPU quota rounded up (cgroup v2's `cpu.max`, v1's
`cpu.cfs_quota_us` / `cpu.cfs_period_us`: Docker's `--cpus`, Kubernetes' CPU limits), which
affinity does not show: a container limited to 2 CPUs on a 64-core host has 64 cores in its
affinity, and 64 threads throttled to 2 CPUs' time crawl. n busy processes get `cores // n`
each, the first `cores % n` of them (by file name) one more.
"""

from __future__ import annotations

import fcntl
import math
import os
import secrets
import time
from pathlib import Path

RECOUNT_SECONDS = 0.5  # how often `threads` looks at the other processes again
# Where a container sees its own cgroup (Docker and Kubernetes mount it there).
CGROUP_ROOT = Path("/sys/fs/cgroup")


def usable_cores(cgroup_root: Path = CGROUP_ROOT) -> int:
    """The cores this process may run on: its affinity, capped by its cgroup's CPU quota."""
    cores = len(os.sched_getaffinity(0))
    quota = cgroup_cpu_quota(cgroup_root)
    return cores if quota is None else max(1, min(cores, math.ceil(quota)))


def cgroup_cpu_quota(root: Path = CGROUP_ROOT) -> float | None:
    """The CPUs' worth of time per period the cgroup mounted at `root` may use (1.5: one and a
    half CPUs), or None without a quota: cgroup v2's `cpu.max` ("150000 100000", or "max …"), or
    v1's `cpu.cfs_quota_us` (-1: none) over `cpu.cfs_period_us` in the cpu controller's folder."""
    try:
        quota, period = (root / "cpu.max").read_text().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    for controller in ("cpu", "cpu,cpuacct", "cpuacct,cpu"):
        try:
            quota = int((root / controller / "cpu.cfs_quota_us").read_text())
            period = int((root / controller / "cpu.cfs_period_us").read_text())
        except (OSError, ValueError):
            continue
        return None if quota <= 0 or period <= 0 else quota / period
    return None


class CoreShare:
    """This process's share of the host's cores. `directory` None: no sharing (all the cores,
    or `fixed`). `fixed`: a thread count set by the user, kept whoever else is busy; the process
    still says when it is busy, so that the others make room."""

    def __init__(self, directory: Path | None, role: str, fixed: int | None = None):
        self.directory = Path(directory) if directory else None
        self.fixed = fixed
        self.name = f"{role}-{os.getpid()}-{secrets.token_hex(4)}"
        self._file = None
        self._busy = False
        self._counted_at = float("-inf")
        self._threads = fixed or usable_cores()

    def busy(self, busy: bool) -> None:
        """Say whether this process is computing now (cheap when nothing changes)."""
        if busy == self._busy or self.directory is None:
            return
        if busy:
            fcntl.flock(self._own_file(), fcntl.LOCK_EX)
        else:
            fcntl.flock(self._file, fcntl.LOCK_UN)
        self._busy = busy
        self._counted_at = float("-inf")  # count again at once

    def threads(self) -> int:
        """The threads this process should run now."""
        if self.fixed:
            return self.fixed
        if self.directory is None:
            return self._threads
        if time.monotonic() - self._counted_at >= RECOUNT_SECONDS:
            busy = sorted({*self._busy_others(), self.name})
            cores = usable_cores()
            self._threads = max(1, cores // len(busy) + (busy.index(self.name) < cores % len(busy)))
            self._counted_at = time.monotonic()
        return self._threads

    def close(self) -> None:
        if self._file is not None:
            self._file.close()  # drops the lock
            (self.directory / self.name).unlink(missing_ok=True)
            self._file = None
            self._busy = False

    def _own_file(self):
        """This process's file, opened (again, if another process removed it)."""
        path = self.directory / self.name
        if self._file is not None:
            try:
                if os.stat(path).st_ino == os.fstat(self._file.fileno()).st_ino:
                    return self._file
            except FileNotFoundError:
                pass
            self._file.close()
        self.directory.mkdir(parents=True, exist_ok=True)
        self._file = open(path, "a")
        return self._file

    def _busy_others(self) -> list[str]:
        if not self.directory.is_dir():
            return []
        busy = []
        for path in self.directory.iterdir():
            if path.name == self.name:
                continue
            try:
                with open(path, "a") as other:
                    try:
                        fcntl.flock(other, fcntl.LOCK_SH | fcntl.LOCK_NB)
                    except BlockingIOError:
                        busy.append(path.name)
                        continue
                    if not _alive(path.name):
                        path.unlink(missing_ok=True)
            except OSError:
                continue  # removed meanwhile
        return busy


def _alive(name: str) -> bool:
    """Whether the process that named a file `<role>-<pid>-<token>` still runs on this host."""
    try:
        os.kill(int(name.split("-")[1]), 0)
    except ProcessLookupError:
        return False
    except (ValueError, IndexError, PermissionError):
        return True
    return True
