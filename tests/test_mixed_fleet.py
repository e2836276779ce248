"""Workers of different sizes share one queue: two real `openft worker` processes, one capped by
OPENFT_WORKER_MEMORY_GIB below what the bundled model needs and above what a tiny model needs.
Of two bundled-model jobs and a tiny one, the big worker trains both big ones, one after the
other, while the small one, idle, passes the second by and trains the tiny one. A job that fits
neither is refused at creation; a worker that stops cleanly removes its row."""

import signal
import time

import openai
import pytest
from sqlalchemy import select

from openft.hardware import compute_dtype
from openft.models.store import ensure_bundled_model, register_base
from openft.runner import workers
from openft.runner.planning import LongestLine, job_plan
from openft.server.app import create_app
from openft.settings import BUNDLED_MODEL, Settings
from openft.store.db import Database
from openft.store.tables import JobRow
from openft.trainer.plan import BUDGET_SHARE, Device, GiB
from tests.helpers import TEN_EXAMPLES, WorkerProcess, fleet_env, in_process_client, new_data_dir, wait_for
from tests.tiny_models import build

TINY = "tiny-llama"


def minimum_need(settings: Settings, base: str, example_tokens: int) -> int:
    """The bytes of the smallest plan of a 10-example, batch-1 job on `base` on this host's CPU."""
    nothing = Device("cpu", "none", 0, compute_dtype("cpu"), qlora=False)
    return job_plan(settings, base, 10, example_tokens, {}, nothing).estimate


def test_the_big_job_goes_to_the_big_worker_only(tmp_path, model_store):
    tiny = build("llama", model_store / BUNDLED_MODEL, tmp_path / "tiny")
    env = fleet_env(f"sqlite:///{tmp_path / 'shared.db'}", f"file://{tmp_path / 'storage'}")
    hosts = {}
    for name in ("api", "small", "big"):
        hosts[name] = new_data_dir(tmp_path / name, model_store)
        (hosts[name] / "models" / TINY).symlink_to(tiny, target_is_directory=True)
    settings = Settings(data_dir=hosts["api"], db_url=env["OPENFT_DB_URL"], storage_url=env["OPENFT_STORAGE_URL"])
    db = Database(settings)
    ensure_bundled_model(settings, db)
    register_base(db, TINY)
    client = in_process_client(create_app(settings, run_worker=False))

    tokens = LongestLine(TEN_EXAMPLES.splitlines(keepends=True))
    list(tokens)
    tiny_need = minimum_need(settings, TINY, tokens.example_tokens)
    bundled_need = minimum_need(settings, BUNDLED_MODEL, tokens.example_tokens)
    assert tiny_need < bundled_need
    small_cap = (tiny_need + bundled_need) / 2 / BUDGET_SHARE / GiB

    small = WorkerProcess(hosts["small"], {**env, "OPENFT_WORKER_MEMORY_GIB": f"{small_cap:.3f}"})
    big = WorkerProcess(hosts["big"], env)
    try:
        wait_until(lambda: len(workers.alive(db, settings)) == 2, "both workers to advertise themselves")
        training = client.files.create(file=("ten.jsonl", TEN_EXAMPLES), purpose="fine-tune")
        one_epoch = {"n_epochs": 1}
        big_jobs = [
            client.fine_tuning.jobs.create(training_file=training.id, model=BUNDLED_MODEL, hyperparameters=one_epoch)
            for _ in range(2)
        ]
        tiny_job = client.fine_tuning.jobs.create(training_file=training.id, model=TINY, hyperparameters=one_epoch)

        # The big worker takes one big job; the small one, idle, passes the other by for the tiny job.
        assert wait_for(client, tiny_job.id, timeout=600).status == "succeeded"
        for job in big_jobs:
            finished = wait_for(client, job.id, timeout=900)
            assert finished.status == "succeeded", finished.error
            assert (hosts["big"] / "jobs" / job.id).is_dir()
            assert not (hosts["small"] / "jobs" / job.id).exists()
        assert (hosts["small"] / "jobs" / tiny_job.id).is_dir()

        events = [e.message for e in client.fine_tuning.jobs.list_events(big_jobs[0].id, limit=100)]
        plan_event = next(m for m in events if m.startswith("Training plan: "))
        assert " LoRA" in plan_event and "on cpu" in plan_event
        with db.session() as session:
            plans = dict(session.execute(select(JobRow.id, JobRow.plan)).tuples().all())
        assert plans[big_jobs[1].id]["budget"] > plans[tiny_job.id]["budget"]  # each on its own worker

        # fits neither: QLoRA, on CPU workers
        with pytest.raises(openai.BadRequestError, match="QLoRA needs a CUDA device"):
            client.fine_tuning.jobs.create(training_file=training.id, model=TINY, hyperparameters={"qlora": True})
    finally:
        for worker in (small, big):
            if worker.process.poll() is None:
                worker.process.send_signal(signal.SIGINT)  # a clean stop removes its row
                worker.process.wait(timeout=60)
                worker.log.close()
    assert workers.alive(db, settings) == []


def wait_until(condition, what: str, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while not condition():
        if time.time() > deadline:
            raise TimeoutError(f"waited {timeout} s for {what}")
        time.sleep(0.5)
