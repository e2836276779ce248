"""The jobs table is the queue. A worker claims a job in one transaction and holds it by a lease
that it renews; a job whose lease ran out (its worker died) is claimed again and resumes."""

import time

from sqlalchemy import or_, select

from openft.store.db import Database
from openft.store.events import add_event
from openft.store.tables import JobRow

LEASE_SECONDS = 30.0


def promote_validated(db: Database) -> None:
    """Move jobs whose files passed validation at create time into the queue."""
    with db.session() as session:
        for job in session.scalars(select(JobRow).where(JobRow.status == "validating_files")):
            job.status = "queued"
            add_event(session, job.id, "Files validated, moving job to queued state")


def claim(db: Database, worker_id: str) -> JobRow | None:
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
        )
        if job is None:
            return None
        resumed = job.attempts > 0
        job.status = "running"
        job.lease_owner = worker_id
        job.lease_expires_at = now + LEASE_SECONDS
        job.attempts += 1
        if resumed:
            add_event(session, job.id, "Fine-tuning job resumed from its last checkpoint")
        else:
            add_event(session, job.id, "Fine-tuning job started", data=None)
    return job


def renew(db: Database, job_id: str, worker_id: str) -> str | None:
    """Extend the lease; returns the job's status, or None if another worker owns it now."""
    with db.session() as session:
        job = session.scalar(select(JobRow).where(JobRow.id == job_id))
        if job is None or job.lease_owner != worker_id:
            return None
        if job.status == "running":
            job.lease_expires_at = time.time() + LEASE_SECONDS
        return job.status


def release(db: Database, job_id: str, worker_id: str) -> None:
    """Give a running job back to the queue (this worker is shutting down)."""
    with db.session() as session:
        job = session.scalar(select(JobRow).where(JobRow.id == job_id))
        if job is not None and job.lease_owner == worker_id and job.status == "running":
            job.status = "queued"
            job.lease_owner = None
            job.lease_expires_at = None
