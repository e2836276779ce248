"""The job state machine on both backends (SQLite and PostgreSQL): claims go oldest first, a fresh
lease is never taken, an expired one is, workers claiming at the same time never get the same
job, a job that ends holds no lease, and a client's request the table does not allow is refused."""

import threading
import time

import pytest
from sqlalchemy import func, select

from openft.errors import OpenFTError
from openft.runner import jobs
from openft.runner.worker import JobRun, Worker
from openft.settings import Settings
from openft.store.db import Database
from openft.store.tables import EventRow, JobRow, ModelRow


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
    assert jobs.claim(db, "w1", 30).id == first
    assert jobs.claim(db, "w2", 30).id == second
    assert jobs.claim(db, "w3", 30) is None
    assert jobs.renew(db, first, "w1", 30) == "running"
    assert jobs.renew(db, first, "w2", 30) is None  # not its job


def test_an_expired_lease_is_claimed_again_and_its_worker_loses_it(db_url, tmp_path):
    db = open_db(db_url, tmp_path)
    (job_id,) = add_jobs(db, 1)
    assert jobs.claim(db, "dead", 0.2).id == job_id
    assert jobs.claim(db, "other", 30) is None
    time.sleep(0.3)
    again = jobs.claim(db, "other", 30)
    assert (again.id, again.attempts) == (job_id, 2)
    assert jobs.renew(db, job_id, "dead", 30) is None
    with db.session() as session:
        messages = list(
            session.scalars(select(EventRow.message).where(EventRow.job_id == job_id).order_by(EventRow.seq))
        )
    assert messages == ["Fine-tuning job started", "Fine-tuning job started again (attempt 2)"]


def test_a_released_job_goes_back_to_the_queue(db_url, tmp_path):
    db = open_db(db_url, tmp_path)
    (job_id,) = add_jobs(db, 1)
    jobs.claim(db, "w1", 30)
    jobs.release(db, job_id, "w2")  # not its job: nothing happens
    assert jobs.claim(db, "w2", 30) is None
    jobs.release(db, job_id, "w1")
    assert jobs.claim(db, "w2", 30).id == job_id


def messages_of(db: Database, job_id: str) -> list[str]:
    with db.session() as session:
        return list(session.scalars(select(EventRow.message).where(EventRow.job_id == job_id).order_by(EventRow.seq)))


def test_a_job_that_ends_holds_no_lease(db_url, tmp_path):
    settings = Settings(data_dir=tmp_path / "data", db_url=db_url)
    db = Database(settings)
    succeeded, failed, cancelled = add_jobs(db, 3)
    for _ in range(3):
        jobs.claim(db, "w1", 30)
    assert jobs.succeed(db, settings, succeeded, "adapters/x", 100, "file-results")
    jobs.fail(db, failed, "boom")
    jobs.cancel(db, "org", cancelled)
    with db.session() as session:
        rows = list(session.scalars(select(JobRow).order_by(JobRow.seq)))
        model = session.scalar(select(ModelRow).where(ModelRow.id == "ft:m"))
    assert [row.status for row in rows] == ["succeeded", "failed", "cancelled"]
    for row in rows:
        assert (row.lease_owner, row.lease_expires_at, row.estimated_finish) == (None, None, None)
        assert row.finished_at is not None
    assert (rows[0].fine_tuned_model, rows[0].result_files, model.adapter_key) == (
        "ft:m",
        ["file-results"],
        "adapters/x",
    )
    assert messages_of(db, succeeded)[1:] == [
        "New fine-tuned model created: ft:m",
        "The job has successfully completed",
    ]
    assert messages_of(db, failed)[1:] == ["Fine-tuning job failed: boom"]
    assert rows[1].error == {"code": "training_failed", "message": "boom", "param": None}


def test_requests_the_table_refuses_are_400s_and_a_stopped_jobs_late_result_is_dropped(db_url, tmp_path):
    settings = Settings(data_dir=tmp_path / "data", db_url=db_url)
    db = Database(settings)
    (job_id,) = add_jobs(db, 1)
    with pytest.raises(OpenFTError, match=f"^Job {job_id} is queued and cannot be paused.$") as refused:
        jobs.pause(db, "org", job_id)
    assert (refused.value.status, refused.value.param) == (400, "fine_tuning_job_id")
    with pytest.raises(OpenFTError, match=f"^Could not find fine tune: {job_id}$"):
        jobs.cancel(db, "another-org", job_id)
    jobs.claim(db, "w1", 30)
    assert jobs.pause(db, "org", job_id).status == "paused"
    assert jobs.renew(db, job_id, "w1", 30) is None  # the worker loses the job and stops its trainer
    jobs.fail(db, job_id, "killed")  # what the stopped trainer said last: too late
    assert not jobs.succeed(db, settings, job_id, "adapters/x", 100, "file-results")
    assert jobs.resume(db, "org", job_id).status == "queued"
    assert jobs.cancel(db, "org", job_id).status == "cancelled"
    with pytest.raises(OpenFTError, match="is cancelled and cannot be resumed"):
        jobs.resume(db, "org", job_id)
    assert messages_of(db, job_id) == [
        "Fine-tuning job started",
        "Fine-tuning job paused",
        "Fine-tuning job resumed",
        "Fine-tuning job cancelled",
    ]


def test_validated_jobs_are_promoted_once_by_racing_workers(db_url, tmp_path):
    dbs = [open_db(db_url, tmp_path, f"d{i}") for i in range(4)]
    ids = add_jobs(dbs[0], 10, status="validating_files")
    threads = [threading.Thread(target=jobs.promote_validated, args=(db,)) for db in dbs]
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
        while (job := jobs.claim(db, worker_id, 30)) is not None:
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
    job = jobs.claim(db, worker.worker_id, settings.lease_seconds)
    with JobRun(worker, job)._renewing():
        time.sleep(2 * settings.lease_seconds)  # a slow upload
        assert jobs.claim(db, "other", 30) is None
    time.sleep(settings.lease_seconds + 0.5)  # no one renews now: the lease runs out
    assert jobs.claim(db, "other", 30).id == job.id
