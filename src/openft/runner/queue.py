"""The jobs table is the queue. A worker claims a job in one transaction and holds it by a lease
that it renews; a job whose lease ran out (its worker died) is claimed again and resumes.

Many workers, on many hosts, share one database. On PostgreSQL a claim is `SELECT … FOR UPDATE
SKIP LOCKED`: concurrent claimers lock different rows and never wait on each other; the other
read-then-write transactions lock the job row they change. On SQLite the same statements run
without the FOR UPDATE (SQLite has none): BEGIN IMMEDIATE lets one writer in at a time."""

import time

from sqlalchemy import or_, select

from openft.store.db import Database
from openft.store.events import add_event
from openft.store.tables import JobRow


def promote_validated(db: Database) -> None:
    """Move jobs whose files passed validation at create time into the queue."""
    with db.session() as session:
        validating = select(JobRow).where(JobRow.status == "validating_files").with_for_update(skip_locked=True)
        for job in session.scalars(validating):
            job.status = "queued"
            add_event(session, job.id, "Files validated, moving job to queued state")


def claim(db: Database, worker_id: str, lease_seconds: float) -> JobRow | None:
    now = time.time()
    with db.session() as session:
        job = session.scalar(
            select(JobRow)
            .where(
                or_(
                    JobRow.status == "queued",
                    (JobRow.status == "running") & (JobRow.lease_expires_at < now),
                )
            )
            .order_by(JobRow.seq)
            .limit(1)
            .with_for_update(skip_locked=True)
        )
        if job is None:
            return None
        resumed = job.attempts > 0
        job.status = "running"
        job.lease_owner = worker_id
        job.lease_expires_at = now + lease_seconds
        job.attempts += 1
        if resumed:
            add_event(session, job.id, f"Fine-tuning job started again (attempt {job.attempts})")
        else:
            add_event(session, job.id, "Fine-tuning job started", data=None)
    return job


def renew(db: Database, job_id: str, worker_id: str, lease_seconds: float) -> str | None:
    """Extend the lease; returns the job's status, or None if another worker owns it now."""
    with db.session() as session:
        job = session.scalar(select(JobRow).where(JobRow.id == job_id).with_for_update())
        if job is None or job.lease_owner != worker_id:
            return None
        if job.status == "running":
            job.lease_expires_at = time.time() + lease_seconds
        return job.status


def release(db: Database, job_id: str, worker_id: str) -> None:
    """Give a running job back to the queue; its next claim resumes from the last checkpoint."""
    with db.session() as session:
        job = session.scalar(select(JobRow).where(JobRow.id == job_id).with_for_update())
        if job is not None and job.lease_owner == worker_id and job.status == "running":
            job.status = "queued"
            job.lease_owner = None
            job.lease_expires_at = None
