"""Running a Python grader, which is untrusted code, in a process of its own
(`sandbox_worker.py` says what it can reach: no network, no data directory, no other
organization's files, only the grader image's packages; 2 GB of address space, a few
processes, a time limit).

One warm process per parsed grader: started for its first item, reused for the next ones (the
source is compiled once), stopped after `idle_seconds` without work, when the grader is closed
or garbage collected, and started again after a timeout or a crash. What a grader does goes in
the result, never in an exception: its exception, a result that is not a float, a timeout or
its process dying are `python_grader_runtime_error` (with the details), a sandbox that cannot
start is `python_grader_server_error`."""

from __future__ import annotations

import asyncio
import json
import os
import select
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import weakref
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from openft.graders.packages import grader_packages
from openft.processes import die_with_parent
from openft.settings import Settings

WORKER = Path(__file__).with_name("sandbox_worker.py")
SYSTEM = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
# Python, the mounts and chroot before the first grade; not counted against the grader.
START_SECONDS = 30.0
# Scrubbed: no settings, keys or paths of the server; BLAS on one thread (each thread is a
# process against RLIMIT_NPROC, and 2 GB of address space holds few thread arenas).
ENVIRONMENT = {
    "PATH": "/usr/bin:/bin",
    "HOME": "/tmp",
    "LANG": "C.UTF-8",
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "NUMEXPR_NUM_THREADS": "1",
}
# Sandboxes die with the thread that started them (PR_SET_PDEATHSIG follows the parent
# *thread*), so one thread that lives as long as the process starts them all: started from a
# thread pool of an event loop that later closes, a grader's warm process would die with it.
_SPAWNER = ThreadPoolExecutor(1, thread_name_prefix="openft-sandbox-spawner")


@dataclass(frozen=True)
class SandboxLimits:
    seconds: float = 120.0
    """Wall-clock time of one grade (OpenAI's limit: 2 minutes); CPU time is held to it too."""
    memory_bytes: int = 2 * 2**30
    """Address space of the grader's process (OpenAI's grader image has 2 GB)."""
    disk_bytes: int = 256 * 2**20
    """Its /tmp, and the largest file it may write."""
    processes: int = 32
    """Processes and threads of the sandbox's user (nobody) at once: a fork bomb stops here."""
    idle_seconds: float = 60.0

    @classmethod
    def from_settings(cls, settings: Settings) -> SandboxLimits:
        """OPENFT_PYTHON_GRADER_SECONDS and OPENFT_PYTHON_GRADER_MEMORY_GB."""
        return cls(seconds=settings.python_grader_seconds, memory_bytes=int(settings.python_grader_memory_gb * 2**30))


@dataclass
class Outcome:
    reward: float
    errors: dict[str, Any] = field(default_factory=dict)
    """The error flags (and their details) to set on the result."""


class Sandbox:
    def __init__(self, source: str, limits: SandboxLimits):
        self.source = source
        self.limits = limits
        self._lock = threading.Lock()
        self._worker: _Worker | None = None
        weakref.finalize(self, Sandbox._stop_worker, self.__dict__)

    async def grade(self, sample: dict[str, Any], item: Any) -> Outcome:
        return await asyncio.to_thread(self.grade_blocking, sample, item)

    def grade_blocking(self, sample: dict[str, Any], item: Any) -> Outcome:
        """One grade, in this grader's warm process; items wait for each other."""
        with self._lock:
            for attempt in range(2):
                if self._worker is None or not self._worker.alive():
                    self._stop()
                    try:
                        self._worker = _Worker.start(self.source, self.limits)
                    except SandboxUnavailable as error:
                        errors = {
                            "python_grader_server_error": True,
                            "python_grader_server_error_type": "sandbox_unavailable",
                            "python_grader_server_error_details": str(error),
                        }
                        return Outcome(0.0, errors)
                try:
                    reply = self._worker.ask({"sample": sample, "item": item}, self.limits.seconds + 1)
                    break
                except TimeoutError:
                    self._stop()
                    return _runtime_error(f"The grader did not return within {self.limits.seconds:g} seconds.")
                except _Died as death:
                    self._stop()
                    # Exit status 0 is the process ending itself when idle, as this item came:
                    # the item goes to a new one, once.
                    if death.args[0] != "exit status 0" or attempt:
                        return _runtime_error(f"The grader's process died ({death}): it ran out of memory, or crashed.")
                except TypeError as error:  # a sample or item JSON cannot carry
                    return _runtime_error(f"The sample or item cannot be given to the grader: {error}")
        if "error" in reply:
            return _runtime_error(reply["error"])
        return Outcome(reply["reward"])

    def close(self) -> None:
        with self._lock:
            self._stop()

    def _stop(self) -> None:
        Sandbox._stop_worker(self.__dict__)

    @staticmethod
    def _stop_worker(state: dict[str, Any]) -> None:
        worker = state.get("_worker")
        state["_worker"] = None
        if worker:
            worker.stop()


class SandboxUnavailable(Exception):
    """The sandbox cannot be made on this host (no namespaces, no `unshare`)."""


class _Died(Exception):
    pass


def _runtime_error(details: str) -> Outcome:
    return Outcome(0.0, {"python_grader_runtime_error": True, "python_grader_runtime_error_details": details})


class _Worker:
    def __init__(self, process: subprocess.Popen, root: str):
        self.process = process
        self.root = root

    @classmethod
    def start(cls, source: str, limits: SandboxLimits) -> _Worker:
        root = tempfile.mkdtemp(prefix="openft-sandbox-")
        as_root = os.geteuid() == 0
        config = {
            "root": root,
            "system": [path for path in SYSTEM if os.path.lexists(path)],
            # the interpreter's own installation; not a virtual environment's (its packages)
            "python": [sys.base_prefix] if sys.base_prefix != "/usr" else [],
            "packages": {name: str(path) for name, path in grader_packages().items()},
            "memory_bytes": limits.memory_bytes,
            "disk_bytes": limits.disk_bytes,
            "processes": limits.processes,
            "seconds": limits.seconds,
            "idle_seconds": limits.idle_seconds,
            "drop_to_nobody": as_root,
        }
        namespaces = ["--net", "--mount", "--pid", "--ipc", "--uts", "--fork", "--kill-child"]
        if not as_root:
            namespaces = ["--user", "--map-root-user", *namespaces]
        unshare = shutil.which("unshare")
        if unshare is None:
            shutil.rmtree(root, ignore_errors=True)
            raise SandboxUnavailable("util-linux's `unshare` is not installed, so Python graders cannot be sandboxed.")
        process = _SPAWNER.submit(
            subprocess.Popen,
            [unshare, *namespaces, sys.executable, "-I", "-S", str(WORKER), json.dumps(config)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=ENVIRONMENT,
            preexec_fn=die_with_parent,
        ).result()
        worker = cls(process, root)
        try:
            worker.read(START_SECONDS)
        except (TimeoutError, _Died):
            worker.stop()
            why = process.stderr.read().decode(errors="replace").strip().splitlines()
            raise SandboxUnavailable(
                "The Python grader sandbox could not start (it needs Linux namespaces: "
                f"run as root, or with unprivileged user namespaces enabled): {why[-1] if why else 'no reason given'}"
            ) from None
        worker.send({"source": source})
        return worker

    def alive(self) -> bool:
        return self.process.poll() is None

    def ask(self, request: dict[str, Any], seconds: float) -> dict[str, Any]:
        self.send(request)
        return self.read(seconds)

    def send(self, message: dict[str, Any]) -> None:
        body = json.dumps(message).encode()
        try:
            self.process.stdin.write(struct.pack(">I", len(body)) + body)
            self.process.stdin.flush()
        except (BrokenPipeError, ValueError):
            raise _Died(self._death()) from None

    def read(self, seconds: float) -> dict[str, Any]:
        channel = self.process.stdout
        header = self._exactly(channel, 4, seconds)
        return json.loads(self._exactly(channel, struct.unpack(">I", header)[0], seconds))

    def _exactly(self, channel, size: int, seconds: float) -> bytes:
        data = b""
        while len(data) < size:
            if not select.select([channel], [], [], seconds)[0]:
                raise TimeoutError
            chunk = os.read(channel.fileno(), size - len(data))
            if not chunk:
                raise _Died(self._death())
            data += chunk
        return data

    def _death(self) -> str:
        try:
            code = self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            return "no reply"
        return f"signal {signal.Signals(-code).name}" if code < 0 else f"exit status {code}"

    def stop(self) -> None:
        """Kills the namespace's first process, and with it every process in the namespace,
        and `unshare`."""
        if self.process.poll() is None:
            for pid in _children(self.process.pid):
                os.kill(pid, signal.SIGKILL)
            self.process.kill()
        self.process.wait()
        for pipe in (self.process.stdin, self.process.stdout, self.process.stderr):
            pipe.close()
        shutil.rmtree(self.root, ignore_errors=True)


def _children(pid: int) -> list[int]:
    try:
        return [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []
