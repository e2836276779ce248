"""Fixtures: one imported copy of the bundled model per test session, fresh data dirs that
link to it, and live `openft serve` processes on random loopback ports."""

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from fastapi.testclient import TestClient
from openai import OpenAI

from openft.cli.demo import wait_until_ready
from openft.models.bundled import import_bundled
from openft.settings import BUNDLED_MODEL

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def isolated_data_dir(tmp_path, monkeypatch):
    """No test touches the user's ./.openft."""
    monkeypatch.setenv("OPENFT_DATA_DIR", str(tmp_path / "openft-data"))


@pytest.fixture(scope="session")
def model_store(tmp_path_factory) -> Path:
    """The bundled model imported once (GGUF → safetensors) for the whole session."""
    models_dir = tmp_path_factory.mktemp("model-store")
    import_bundled(models_dir)
    return models_dir


def new_data_dir(root: Path, model_store: Path) -> Path:
    (root / "models").mkdir(parents=True)
    (root / "models" / BUNDLED_MODEL).symlink_to(model_store / BUNDLED_MODEL, target_is_directory=True)
    return root


@pytest.fixture
def data_dir(tmp_path, model_store) -> Path:
    return new_data_dir(tmp_path / "data", model_store)


def in_process_client(app, api_key: str = "sk-test") -> OpenAI:
    """The official client talking to `app` in this process, without a socket."""
    return OpenAI(base_url="http://testserver/v1", api_key=api_key, http_client=TestClient(app), max_retries=0)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LiveServer:
    def __init__(self, data_dir: Path, *extra_args: str, env: dict[str, str] | None = None):
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
        wait_until_ready(self.base_url, self.process, timeout=180)

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


@pytest.fixture(scope="session")
def live_server(tmp_path_factory, model_store):
    """One real server (API + worker + trainer subprocesses) shared by the end-to-end tests."""
    server = LiveServer(new_data_dir(tmp_path_factory.mktemp("live"), model_store))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def postgres():
    """A throwaway PostgreSQL cluster for the session (tests/postgres.py); skipped when
    PostgreSQL is not installed, unless OPENFT_TEST_POSTGRES is set."""
    from tests.postgres import PostgresCluster

    cluster = PostgresCluster()
    yield cluster
    cluster.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path) -> str:
    """A fresh, empty database on each backend: the store and queue tests run against both."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    return request.getfixturevalue("postgres").new_database()


@pytest.fixture(scope="session")
def ahoy_fine_tune(live_server):
    """One fine-tune of gpt-3.5-turbo (auto hyperparameters) on tests/data/ahoy.jsonl, where every
    reply opens with "Ahoy matey!", shared by the end-to-end tests that need a model that learned
    something checkable (training is the slow part). Returns (uploaded file, creation time, job)."""
    from tests.test_workflow import DATA, wait_for

    client = live_server.client()
    uploaded = client.files.create(file=(DATA / "ahoy.jsonl").open("rb"), purpose="fine-tune")
    created_at = time.time()
    job = client.fine_tuning.jobs.create(training_file=uploaded.id, model="gpt-3.5-turbo", suffix="ahoy", seed=1)
    return uploaded, created_at, wait_for(client, job.id)
