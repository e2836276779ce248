"""What the tests share besides fixtures: live servers and workers in subprocesses, the official
client in process, and waiting for a job."""

import os
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import openai
import psutil
from fastapi.testclient import TestClient
from openai import OpenAI
from openai.types import FileObject
from openai.types.fine_tuning import FineTuningJob

from openft.cli.demo import wait_until_ready
from openft.hardware import compute_dtype, cpu_has_native_bf16
from openft.settings import BUNDLED_MODEL

HOST_DTYPE = compute_dtype("cpu")  # the float path this host takes by default
OTHER_DTYPE = "float32" if HOST_DTYPE == "bfloat16" else "bfloat16"
# Without AVX512-BF16 or AMX, torch emulates bf16: on an AVX2 CPU a bf16 matmul took 7x an fp32
# one and a LoRA step of the bundled model 12x (7 against 88 tokens/s). There the bf16 path runs
# the tests of its numerics (batch-invariant serving, DPO's first step) but not the learning
# tests, whose jobs would take half an hour each.
EMULATED_BF16 = "bfloat16" if not cpu_has_native_bf16() else None
EMULATED_REASON = "bf16 is emulated on this CPU (no AVX512-BF16 or AMX): its learning tests run where it is native"
REPO = Path(__file__).resolve().parent.parent
DATA = Path(__file__).parent / "data"
TEN_EXAMPLES = b"".join((DATA / "ahoy.jsonl").read_bytes().splitlines(keepends=True)[:10])
# The fleet tests' lease: a killed worker's job is claimed again this long after its last renewal.
FLEET_LEASE_SECONDS = 10
TERMINAL = ("succeeded", "failed", "cancelled")


def train_threads() -> int:
    """Threads for a trainer a test starts itself: OPENFT_TRAIN_THREADS, which conftest.py sets
    to 1 on xdist's workers (two 2-thread teams on 2 cores collapse), else 2."""
    return int(os.environ.get("OPENFT_TRAIN_THREADS") or 2)


def new_data_dir(root: Path, model_store: Path) -> Path:
    (root / "models").mkdir(parents=True)
    (root / "models" / BUNDLED_MODEL).symlink_to(model_store / BUNDLED_MODEL, target_is_directory=True)
    return root


def in_process_client(app, api_key: str = "sk-test") -> OpenAI:
    """The official client talking to `app` in this process, without a socket."""
    return OpenAI(base_url="http://testserver/v1", api_key=api_key, http_client=TestClient(app), max_retries=0)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LiveServer:
    def __init__(self, data_dir: Path, *extra_args: str, env: dict[str, str] | None = None, ready_timeout=180):
        self.data_dir = data_dir
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        self.log = open(data_dir / "server.log", "ab")
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "openft",
                "serve",
                "--data-dir",
                str(data_dir),
                "--port",
                str(self.port),
                *extra_args,
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
        )
        wait_until_ready(self.base_url, self.process, timeout=ready_timeout)

    def client(self) -> OpenAI:
        return OpenAI(base_url=self.base_url, api_key="sk-test", max_retries=0, timeout=300)

    def stop(self) -> None:
        stop_process(self.process)
        self.log.close()


def trainer_of(server: LiveServer) -> psutil.Process:
    """The trainer subprocess the server's worker is running now."""
    children = psutil.Process(server.process.pid).children(recursive=True)
    return next(p for p in children if "openft.trainer" in " ".join(p.cmdline()))


def stop_process(process: subprocess.Popen) -> None:
    """SIGTERM, and SIGKILL if it has not exited a minute later."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()


def fleet_env(db_url: str, storage_url: str) -> dict[str, str]:
    """What every process of the fleet shares: the database and the artifact storage."""
    return {
        "OPENFT_DB_URL": db_url,
        "OPENFT_STORAGE_URL": storage_url,
        "OPENFT_TRAIN_THREADS": "1",
        "OPENFT_SERVE_THREADS": "1",
        "OPENFT_LEASE_SECONDS": str(FLEET_LEASE_SECONDS),
        "OPENFT_WORKER_POLL_SECONDS": "0.3",
    }


class WorkerProcess:
    """`openft worker` on its own data dir (its host's model store and scratch space)."""

    def __init__(self, data_dir: Path, env: dict[str, str]):
        self.data_dir = data_dir
        self.log = open(data_dir / "worker.log", "ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "openft", "worker", "--data-dir", str(data_dir)],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **env},
        )

    def training(self) -> str | None:
        """The id of the job this worker's trainer is training, if any."""
        for child in psutil.Process(self.process.pid).children(recursive=True):
            try:
                command = child.cmdline()
            except psutil.NoSuchProcess:
                continue
            if "openft.trainer" in command:
                return Path(command[-1]).parent.name  # …/jobs/<job id>/spec.json
        return None

    def stop(self) -> None:
        stop_process(self.process)
        self.log.close()


@dataclass
class Finished:
    """A job polled until it ended, and every status seen on the way, in order."""

    job: FineTuningJob
    statuses: list[str]


def watch(client: openai.OpenAI, job_id: str, timeout: float = 900) -> Finished:
    deadline = time.time() + timeout
    statuses = []
    while time.time() < deadline:
        job = client.fine_tuning.jobs.retrieve(job_id)
        if not statuses or statuses[-1] != job.status:
            statuses.append(job.status)
        if job.status in TERMINAL:
            return Finished(job, statuses)
        time.sleep(0.1)
    raise TimeoutError(f"job {job_id} still {job.status}")


def wait_for(client: openai.OpenAI, job_id: str, timeout: float = 900) -> FineTuningJob:
    return watch(client, job_id, timeout).job


@dataclass
class FineTune:
    """A finished fine-tuning job with the upload it trained on (conftest.ahoy_fine_tune)."""

    uploaded: FileObject
    created_at: float
    job: FineTuningJob
    statuses: list[str]


def run_openft(*args, env: dict) -> subprocess.CompletedProcess:
    """`openft ARGS` in a subprocess, with `env` added to this one's environment."""
    return subprocess.run(
        [sys.executable, "-m", "openft", *map(str, args)],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        timeout=600,
    )


def hub_cache(root: Path, repo_id: str, folder: Path) -> Path:
    """`folder` laid out as huggingface_hub's cache holds a downloaded repository: blobs named by
    content, a snapshot of symlinks to them, and refs/main naming the snapshot."""
    repo = root / f"models--{repo_id.replace('/', '--')}"
    commit = "0123456789abcdef0123456789abcdef01234567"
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True)
    (repo / "blobs").mkdir()
    for n, path in enumerate(sorted(folder.iterdir())):
        blob = repo / "blobs" / f"blob{n:04d}"
        shutil.copyfile(path, blob)
        (snapshot / path.name).symlink_to(os.path.relpath(blob, snapshot))
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    return repo
