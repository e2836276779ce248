"""A job is planned against the workers alive when it is created (in process, official client):
one that fits none of them is a 400 that says why, one that fits any is accepted, and with no
worker alive the job waits in the queue. A worker claims only a job whose plan fits it, in what
the other processes of its host (the engine) do not hold (openft/memory.py)."""

import openai
import pytest

from openft.memory import HostMemory
from openft.models.store import ensure_bundled_model
from openft.runner import jobs, workers
from openft.runner.worker import Worker
from openft.server.app import create_app
from openft.settings import BUNDLED_MODEL, Settings
from openft.store.db import Database
from openft.trainer.plan import Device, GiB
from tests.helpers import TEN_EXAMPLES, in_process_client

SMALL = Device("cpu", "a small CPU", 1 * GiB, "float32", qlora=False)  # the bundled model needs ~1.3 GiB at least
LARGE = Device("cpu", "a large CPU", 16 * GiB, "float32", qlora=False)


@pytest.fixture
def settings(data_dir) -> Settings:
    settings = Settings(data_dir=data_dir, host_dir=data_dir / "host")
    ensure_bundled_model(settings, Database(settings))
    return settings


@pytest.fixture
def client(settings) -> openai.OpenAI:
    return in_process_client(create_app(settings, run_worker=False))


def create(client: openai.OpenAI, **hyperparameters):
    training = client.files.create(file=("ten.jsonl", TEN_EXAMPLES), purpose="fine-tune")
    return client.fine_tuning.jobs.create(
        training_file=training.id, model="gpt-3.5-turbo", hyperparameters=hyperparameters
    )


def test_with_no_worker_alive_a_job_waits_in_the_queue(client):
    assert create(client).status == "validating_files"


def test_a_job_that_fits_no_worker_alive_is_a_400_saying_why(settings, client):
    db = Database(settings)
    workers.advertise(db, "worker-small", SMALL)
    with pytest.raises(openai.BadRequestError) as refused:
        create(client)
    error = refused.value.body
    assert (refused.value.status_code, error["code"], error["param"]) == (400, "insufficient_memory", "model")
    assert "cannot train on any worker" in error["message"]
    assert "more than the 0.9 GiB cpu worker (a small CPU) gives a job" in error["message"]

    workers.advertise(db, "worker-large", LARGE)  # now one fits
    assert create(client).status == "validating_files"
    # QLoRA asked for, on CPU workers only: it fits none
    with pytest.raises(openai.BadRequestError, match="QLoRA needs a CUDA device"):
        create(client, qlora=True)


def test_a_worker_whose_heartbeat_is_a_lease_old_is_not_planned_against(settings, client):
    db = Database(settings)
    workers.advertise(db, "worker-small", SMALL)
    stale = Settings(data_dir=settings.data_dir, lease_seconds=0)
    assert workers.alive(db, stale) == []
    assert workers.alive(db, settings) == [SMALL]
    workers.remove(db, "worker-small")
    assert create(client).status == "validating_files"


def test_a_worker_claims_only_the_jobs_that_fit_it(settings, client):
    db = Database(settings)
    big = create(client)  # no worker alive yet: accepted
    small_settings = Settings(data_dir=settings.data_dir, worker_memory_gib=0.8)
    small = Worker(small_settings, db)
    assert small.device.memory == int(0.8 * GiB)  # the cap, below this host's RAM
    jobs.promote_validated(db)
    assert jobs.claim(db, small.worker_id, 30, fits=small.fits) is None
    large = Worker(settings, db)  # this host's RAM, uncapped: a few GiB are enough
    claimed = jobs.claim(db, large.worker_id, 30, fits=large.fits)
    assert claimed.id == big.id
    assert claimed.base_model == BUNDLED_MODEL and claimed.n_examples == 10


def test_a_worker_plans_into_what_the_engine_on_its_host_does_not_hold(settings, client):
    db = Database(settings)
    job = create(client)
    jobs.promote_validated(db)
    worker = Worker(settings, db)
    total = worker.host_memory.total
    engine = HostMemory(settings.memory_dir, "engine", worker.device.kind, total)
    engine.record(total - GiB)  # the engine's bases leave 1 GiB; the job needs ~1.3 GiB at least
    assert not worker.run_once()  # nothing claimed, nothing trained
    assert engine.wanted_from_me() > 0  # the worker waits for room that the engine holds
    engine.record(0)  # the engine unloaded its bases
    assert jobs.claim(db, worker.worker_id, 30, fits=worker.fits).id == job.id
