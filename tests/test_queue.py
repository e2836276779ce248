"""The queue on both backends (SQLite and PostgreSQL): claims go oldest first, a fresh lease is
never taken, an expired one is, and workers claiming at the same time never get the same job."""

import threading
import time

from sqlalchemy import func, select

from openft.runner import queue
from openft.runner.worker import JobRun, Worker
from openft.settings import Settings
from openft.store.db import Database
from openft.store.tables import EventRow, JobRow


def add_jobs(db: Database, n: int, status: str = "queued") -> list[str]:
    ids = [f"ftjob-{status[:4]}{i:03d}" for i in range(n)]
    with db.session() as session:
        for job_id in ids:
            session.add(
                JobRow(
                    id=job_id,
                    organization_id="org",
                    created_at=0,
                    model="m",
                    base_model="m",
                    status=status,
                    training_file="file-x",
                    seed=0,
                    hyperparameters={},
                    result_files=[],
                    planned_model_name="ft:m",
                )
            )
    return ids


def open_db(db_url: str, tmp_path, name: str = "data") -> Database:
    return Database(Settings(data_dir=tmp_path / name, db_url=db_url))


def test_claims_go_oldest_first_and_hold_the_job(db_url, tmp_path):
    db = open_db(db_url, tmp_path)
    first, second = add_jobs(db, 2)
    assert queue.claim(db, "w1", 30).id == first
    assert queue.claim(db, "w2", 30).id == second
    assert queue.claim(db, "w3", 30) is None
    assert queue.renew(db, first, "w1", 30) == "running"
    assert queue.renew(db, first, "w2", 30) is None  # not its job


def test_an_expired_lease_is_claimed_again_and_its_worker_loses_it(db_url, tmp_path):
    db = open_db(db_url, tmp_path)
    (job_id,) = add_jobs(db, 1)
    assert queue.claim(db, "dead", 0.2).id == job_id
    assert queue.claim(db, "other", 30) is None
    time.sleep(0.3)
    again = queue.claim(db, "other", 30)
    assert (again.id, again.attempts) == (job_id, 2)
    assert queue.renew(db, job_id, "dead", 30) is None
    with db.session() as session:
        messages = list(
            session.scalars(select(EventRow.message).where(EventRow.job_id == job_id).order_by(EventRow.seq))
        )
    assert messages == ["Fine-tuning job started", "Fine-tuning job started again (attempt 2)"]


def test_a_released_job_goes_back_to_the_queue(db_url, tmp_path):
    db = open_db(db_url, tmp_path)
    (job_id,) = add_jobs(db, 1)
    queue.claim(db, "w1", 30)
    queue.release(db, job_id, "w2")  # not its job: nothing happens
    assert queue.claim(db, "w2", 30) is None
    queue.release(db, job_id, "w1")
    assert queue.claim(db, "w2", 30).id == job_id


def test_validated_jobs_are_promoted_once_by_racing_workers(db_url, tmp_path):
    dbs = [open_db(db_url, tmp_path, f"d{i}") for i in range(4)]
    ids = add_jobs(dbs[0], 10, status="validating_files")
    threads = [threading.Thread(target=queue.promote_validated, args=(db,)) for db in dbs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    with dbs[0].session() as session:
        validated = EventRow.message == "Files validated, moving job to queued state"
        promoted = session.scalar(select(func.count()).where(validated))
        statuses = set(session.scalars(select(JobRow.status)))
    assert (promoted, statuses) == (len(ids), {"queued"})


def test_concurrent_claimers_never_share_a_job(db_url, tmp_path):
    # One Database (engine, connection pool) per claimer, as in separate worker processes.
    dbs = [open_db(db_url, tmp_path, f"d{i}") for i in range(6)]
    ids = add_jobs(dbs[0], 60)
    claimed: list[tuple[str, str]] = []
    start = threading.Barrier(len(dbs))

    def claimer(db: Database, worker_id: str) -> None:
        start.wait()
        while (job := queue.claim(db, worker_id, 30)) is not None:
            claimed.append((job.id, worker_id))

    threads = [threading.Thread(target=claimer, args=(db, f"w{i}")) for i, db in enumerate(dbs)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(job_id for job_id, _ in claimed) == ids
    assert len({worker for _, worker in claimed}) > 1
    with dbs[0].session() as session:
        assert set(session.scalars(select(JobRow.attempts))) == {1}


def test_a_worker_busy_moving_artifacts_keeps_its_lease(db_url, tmp_path):
    """Uploads and downloads hold up the loop that renews the lease; `_renewing` covers them."""
    settings = Settings(data_dir=tmp_path / "data", db_url=db_url, lease_seconds=3)
    db = Database(settings)
    add_jobs(db, 1)
    worker = Worker(settings, db)
    job = queue.claim(db, worker.worker_id, settings.lease_seconds)
    with JobRun(worker, job)._renewing():
        time.sleep(2 * settings.lease_seconds)  # a slow upload
        assert queue.claim(db, "other", 30) is None
    time.sleep(settings.lease_seconds + 0.5)  # no one renews now: the lease runs out
    assert queue.claim(db, "other", 30).id == job.id
