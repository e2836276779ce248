"""Fixtures: one imported copy of the bundled model per test session, fresh data dirs that
link to it, and live `openft serve` processes on random loopback ports."""

import time
from pathlib import Path

import pytest

from openft.models.bundled import import_bundled
from openft.settings import BUNDLED_MODEL
from tests.helpers import DATA, FineTune, LiveServer, new_data_dir, watch


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


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory, model_store) -> dict[str, Path]:
    """Random-weight models of six families with their chat templates (tests/tiny_models.py),
    built once for the session: family name -> HF folder."""
    from tests import tiny_models as families

    root = tmp_path_factory.mktemp("tiny-models")
    bundled = model_store / BUNDLED_MODEL
    return {name: families.build(name, bundled, root / f"tiny-{name}") for name in families.FAMILIES}


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


@pytest.fixture(scope="session")
def ahoy_fine_tune(live_server):
    """One fine-tune of gpt-3.5-turbo (auto hyperparameters) on tests/data/ahoy.jsonl, where every
    reply opens with "Ahoy matey!", shared by the end-to-end tests that need a model that learned
    something checkable (training is the slow part)."""

    client = live_server.client()
    uploaded = client.files.create(file=(DATA / "ahoy.jsonl").open("rb"), purpose="fine-tune")
    created_at = time.time()
    job = client.fine_tuning.jobs.create(training_file=uploaded.id, model="gpt-3.5-turbo", suffix="ahoy", seed=1)
    finished = watch(client, job.id)
    return FineTune(uploaded, created_at, finished.job, finished.statuses)
