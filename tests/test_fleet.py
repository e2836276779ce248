"""Many workers, one PostgreSQL database, one shared artifact storage: three real `openft worker`
processes, each with its own data dir (as on its own host), take four jobs (the fewest that show
it: one to kill, a job for each other worker and one more; all but the one to kill on a tiny
model). Every job runs
exactly once, every worker claims work, and a worker killed (SIGKILL) in the middle of a job
loses it to another worker, which, once the lease has run out, resumes it from the checkpoint
the first one pushed to the storage (the new host has no file of the old one's)."""

import signal
import time
from collections import Counter

from openai import OpenAI
from sqlalchemy import select

from openft.models.store import ensure_bundled_model, register_base
from openft.server.app import create_app
from openft.settings import BUNDLED_MODEL, Settings
from openft.store.db import Database
from openft.store.tables import CheckpointRow, EventRow, JobRow
from tests.helpers import TEN_EXAMPLES, WorkerProcess, fleet_env, in_process_client, new_data_dir

N_WORKERS, N_JOBS = 3, 4
LONG_EPOCHS = 5
TINY = "tiny-llama"


def host(path, model_store, tiny_models):
    """A host's data dir: the bundled model and the tiny one in its model store."""
    data_dir = new_data_dir(path, model_store)
    (data_dir / "models" / TINY).symlink_to(tiny_models["llama"], target_is_directory=True)
    return data_dir


def api_client(settings: Settings) -> OpenAI:
    db = Database(settings)
    ensure_bundled_model(settings, db)
    register_base(db, TINY)
    return in_process_client(create_app(settings, run_worker=False))


def test_workers_run_each_job_once_and_take_over_a_killed_ones_job(postgres, tmp_path, model_store, tiny_models):
    env = fleet_env(postgres.new_database(), f"file://{tmp_path / 'shared-storage'}")
    settings = Settings(
        data_dir=host(tmp_path / "api", model_store, tiny_models),
        db_url=env["OPENFT_DB_URL"],
        storage_url=env["OPENFT_STORAGE_URL"],
    )
    client = api_client(settings)
    training = client.files.create(file=("ten.jsonl", TEN_EXAMPLES), purpose="fine-tune")
    # The first job is the one to kill: five one-step epochs of the bundled model, a checkpoint
    # after each (long enough to be caught in the middle); the others train the tiny model.
    job_ids = [
        client.fine_tuning.jobs.create(
            training_file=training.id,
            model=BUNDLED_MODEL if i == 0 else TINY,
            seed=i,
            hyperparameters={"n_epochs": LONG_EPOCHS if i == 0 else 1, "batch_size": 10},
        ).id
        for i in range(N_JOBS)
    ]
    killed_job = job_ids[0]
    workers = [WorkerProcess(host(tmp_path / f"host{i}", model_store, tiny_models), env) for i in range(N_WORKERS)]
    try:
        victim = wait_for_a_checkpoint(workers, settings, killed_job)
        victim.process.send_signal(signal.SIGKILL)
        victim.process.wait()
        wait_until_all_finished(settings, job_ids, timeout=600)
    finally:
        for worker in workers:
            worker.stop()

    db = Database(settings)
    with db.session() as session:
        jobs = {job.id: job for job in session.scalars(select(JobRow))}
        events = list(session.scalars(select(EventRow).order_by(EventRow.seq)))
    assert {job.status for job in jobs.values()} == {"succeeded"}, [job.error for job in jobs.values()]
    count = lambda message: Counter(e.job_id for e in events if e.message == message)  # noqa: E731
    assert count("Fine-tuning job started") == Counter(job_ids)
    assert count("Files validated, moving job to queued state") == Counter(job_ids)
    assert count("The job has successfully completed") == Counter(job_ids)
    assert count("Fine-tuning job started again (attempt 2)") == Counter([killed_job])
    assert {job_id: job.attempts for job_id, job in jobs.items()} == {j: 2 if j == killed_job else 1 for j in job_ids}
    # Every step recorded once: one for each short job, 1..5 for the killed one.
    steps = [(e.job_id, e.data["step"]) for e in events if e.type == "metrics"]
    assert sorted(steps) == sorted([(j, 1) for j in job_ids[1:]] + [(killed_job, n) for n in range(1, LONG_EPOCHS + 1)])
    # The killed job finished on another host, resumed from a checkpoint fetched from the storage.
    hosts = [w for w in workers if (w.data_dir / "jobs" / killed_job).exists()]
    assert victim in hosts and len(hosts) == 2
    resumed = [e.message for e in events if e.job_id == killed_job and e.message.startswith("Resumed from")]
    assert len(resumed) == 1 and resumed[0] != "Resumed from the checkpoint at step 0", resumed
    assert len(jobs[killed_job].result_files) == 1
    for job_id in job_ids:
        assert (tmp_path / "shared-storage" / "adapters" / job_id / "adapter_model.safetensors").exists()
    # Work was shared: every worker claimed a job.
    for worker in workers:
        assert any((worker.data_dir / "jobs").iterdir())


def wait_for_a_checkpoint(workers: list[WorkerProcess], settings: Settings, job_id: str) -> WorkerProcess:
    """The worker training `job_id`, once the job has a checkpoint (and more steps to go)."""
    db = Database(settings)
    deadline = time.time() + 300
    while time.time() < deadline:
        with db.session() as session:
            checkpoint = session.scalar(select(CheckpointRow.step_number).where(CheckpointRow.job_id == job_id))
        if checkpoint is not None:
            return next(worker for worker in workers if worker.training() == job_id)
        time.sleep(0.1)
    raise TimeoutError(f"{job_id} made no checkpoint")


def wait_until_all_finished(settings: Settings, job_ids: list[str], timeout: float) -> None:
    db = Database(settings)
    deadline = time.time() + timeout
    while time.time() < deadline:
        with db.session() as session:
            statuses = list(session.scalars(select(JobRow.status)))
        if len(statuses) == len(job_ids) and set(statuses) <= {"succeeded", "failed", "cancelled"}:
            return
        time.sleep(0.2)
    raise TimeoutError(f"jobs still unfinished: {Counter(statuses)}")
