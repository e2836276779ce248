"""Fixtures: one imported copy of the bundled model per test run, fresh data dirs that link to
it, and live `openft serve` processes on random loopback ports.

The suite runs on pytest-xdist's workers (`make test`: `-n 2 --dist loadgroup`). What every
worker needs is built once for the run, under a file lock (`built_once`); the tests that share
the session's live server (and its fine-tunes) are one group, so they run on one worker and the
fine-tunes train once. Every process of every worker shares one host folder
(`OPENFT_HOST_DIR`), so that trainers and engines of both workers share the two cores instead of
each taking both, and the host's memory."""

import json
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from filelock import FileLock

from openft.models.store import import_bundled
from openft.settings import BUNDLED_MODEL
from tests.helpers import (
    DATA,
    HOST_DTYPE,
    OTHER_DTYPE,
    FineTune,
    LiveServer,
    new_data_dir,
    watch,
)
from tests.tiny_models import FAMILIES, REAL_FAMILIES, build, build_real

# Fixtures whose tests run on the worker that holds the session's live server.
LIVE_SERVER_FIXTURES = {"live_server", "ahoy_fine_tune"}


def pytest_configure(config):
    run = os.environ.get("PYTEST_XDIST_TESTRUNUID") or str(os.getpid())
    os.environ.setdefault("OPENFT_HOST_DIR", str(Path(tempfile.gettempdir()) / f"openft-test-host-{run}"))
    if os.environ.get("PYTEST_XDIST_WORKER"):
        # One thread per torch process: the two workers' tests run torch in their own process
        # too (not counted in the cores folder), and two-thread OpenMP teams beside other busy
        # threads slowed tests 5-10x; single threads share two cores without that collapse.
        for setting in ("OMP_NUM_THREADS", "OPENFT_TRAIN_THREADS", "OPENFT_SERVE_THREADS"):
            os.environ.setdefault(setting, "1")


def pytest_itemcollected(item):
    """The tests of each shared live server run on one worker (its xdist group; marked as each
    test is collected, before xdist reads the groups): the session's, the other float path's,
    and each value of a parametrized `*_server` fixture."""
    params = getattr(item, "callspec", None) and item.callspec.params or {}
    dtype = params.get("float_path")
    if LIVE_SERVER_FIXTURES & set(getattr(item, "fixturenames", ())) or dtype == HOST_DTYPE:
        item.add_marker(pytest.mark.xdist_group("live-server"))
    elif dtype == OTHER_DTYPE:
        item.add_marker(pytest.mark.xdist_group("other-path-server"))
    for name, value in params.items():
        if name.endswith("_server"):
            item.add_marker(pytest.mark.xdist_group(f"{name}-{value}"))


@pytest.fixture(autouse=True)
def isolated_data_dir(tmp_path, monkeypatch):
    """No test touches the user's ./.openft."""
    monkeypatch.setenv("OPENFT_DATA_DIR", str(tmp_path / "openft-data"))


def built_once(tmp_path_factory, name: str, build: Callable[[Path], None]) -> Path:
    """`build(folder)` run once for the whole test run, by whichever worker needs it first."""
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # shared by the workers of this run
    folder, built = root / name, root / f"{name}.built"
    with FileLock(f"{folder}.lock"):
        if not built.exists():
            folder.mkdir(parents=True, exist_ok=True)
            build(folder)
            built.touch()
    return folder


@pytest.fixture(scope="session")
def model_store(tmp_path_factory) -> Path:
    """The bundled model imported once (GGUF → safetensors) for the whole run."""
    return built_once(tmp_path_factory, "model-store", import_bundled)


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory, model_store) -> dict[str, Path]:
    """The random-weight models of tests/tiny_models.py, one folder per family, built once."""
    root = built_once(
        tmp_path_factory,
        "tiny-models",
        lambda root: [build(name, model_store / BUNDLED_MODEL, root / name) for name in FAMILIES],
    )
    return {name: root / name for name in FAMILIES}


@pytest.fixture
def data_dir(tmp_path, model_store) -> Path:
    return new_data_dir(tmp_path / "data", model_store)


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


def ahoy(server: LiveServer) -> FineTune:
    """A fine-tune of gpt-3.5-turbo (auto hyperparameters) on tests/data/ahoy.jsonl, where every
    reply opens with "Ahoy matey!"."""
    client = server.client()
    uploaded = client.files.create(file=(DATA / "ahoy.jsonl").open("rb"), purpose="fine-tune")
    created_at = time.time()
    job = client.fine_tuning.jobs.create(training_file=uploaded.id, model="gpt-3.5-turbo", suffix="ahoy", seed=1)
    finished = watch(client, job.id)
    return FineTune(uploaded, created_at, finished.job, finished.statuses)


@pytest.fixture(scope="session")
def ahoy_fine_tune(live_server) -> FineTune:
    """One "Ahoy matey!" fine-tune, shared by the end-to-end tests that need a model that learned
    something checkable (training is the slow part)."""
    return ahoy(live_server)


# ---- both float paths on any host


@pytest.fixture(scope="session")
def other_path_server(tmp_path_factory, model_store):
    """A live server that computes in the other dtype than this host's default (`OPENFT_COMPUTE_DTYPE`):
    fp32 on a CPU with native bf16, bf16 on one without."""
    server = LiveServer(
        new_data_dir(tmp_path_factory.mktemp(f"live-{OTHER_DTYPE}"), model_store),
        env={"OPENFT_COMPUTE_DTYPE": OTHER_DTYPE},
    )
    yield server
    server.stop()


@pytest.fixture(scope="session")
def other_path_fine_tune(other_path_server) -> FineTune:
    """A fine-tune to serve on the other float path: one step on ten short examples, an adapter
    that changes the model, not a learner (what the recipes learn on this path is tested by its
    own jobs: tests/test_dpo_workflow.py, tests/test_dpo_trainer.py)."""
    client = other_path_server.client()
    lines = [
        {"messages": [{"role": "user", "content": f"Say {n}."}, {"role": "assistant", "content": f"Ahoy! {n}."}]}
        for n in range(10)
    ]
    uploaded = client.files.create(file=("short.jsonl", "\n".join(map(json.dumps, lines))), purpose="fine-tune")
    created_at = time.time()
    job = client.fine_tuning.jobs.create(
        training_file=uploaded.id, model="gpt-3.5-turbo", hyperparameters={"n_epochs": 1, "batch_size": 10}
    )
    finished = watch(client, job.id)
    return FineTune(uploaded, created_at, finished.job, finished.statuses)


@dataclass
class FloatPath:
    """A test's float path (`dtype`): the live server that computes in it, and its fine-tune,
    started or trained when first asked for."""

    dtype: str
    request: pytest.FixtureRequest

    @property
    def learned(self) -> bool:
        """Whether `fine_tune` learned to open with "Ahoy matey!" (the session's, on the host path)."""
        return self.dtype == HOST_DTYPE

    @property
    def server(self) -> LiveServer:
        return self.request.getfixturevalue("live_server" if self.dtype == HOST_DTYPE else "other_path_server")

    @property
    def fine_tune(self) -> FineTune:
        """A fine-tune served on this path: on the host's, the session's "Ahoy matey!" one."""
        name = "ahoy_fine_tune" if self.dtype == HOST_DTYPE else "other_path_fine_tune"
        return self.request.getfixturevalue(name)


@pytest.fixture(params=["float32", "bfloat16"])
def float_path(request) -> FloatPath:
    """Runs a test whose outcome depends on numerics on both float paths, whatever the host."""
    return FloatPath(request.param, request)


@pytest.fixture(scope="session")
def family_models(tmp_path_factory, model_store) -> dict[str, Path]:
    """The random-weight models of tests/tiny_models.py's REAL_FAMILIES (published templates and
    architecture features), one folder per family, built once."""
    root = built_once(
        tmp_path_factory,
        "family-models",
        lambda root: [build_real(name, model_store / BUNDLED_MODEL, root / name) for name in REAL_FAMILIES],
    )
    return {name: root / name for name in REAL_FAMILIES}
