"""A job's life: every change of its status, and of the lease a worker holds it by, is made here.

The jobs table is the queue. A worker claims a job in one transaction and holds it by a lease
that it renews; a job whose lease ran out (its worker died) is claimed again and resumes from
its last checkpoint. The worker (runner/worker.py) promotes, claims, renews, releases, succeeds
and fails jobs; the API (services/fine_tuning.py) cancels, pauses and resumes them, and the
worker running one sees that at its next renew and stops the trainer.

Each function is one transaction. Many workers, on many hosts, share one database. On
PostgreSQL a claim is `SELECT … FOR UPDATE SKIP LOCKED`: concurrent claimers lock different rows
and never wait on each other; the other read-then-write transactions lock the job row they
change. On SQLite the same statements run without the FOR UPDATE (SQLite has none): BEGIN
IMMEDIATE lets one writer in at a time.
"""

import time
from collections.abc import Callable
from typing import NamedTuple

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from openft.errors import OpenFTError, job_not_found
from openft.models.store import register_fine_tune
from openft.protocol.fine_tuning import JobStatus
from openft.settings import Settings
from openft.store.db import Database
from openft.store.events import add_event
from openft.store.tables import JobRow


class Transition(NamedTuple):
    sources: tuple[JobStatus, ...]
    target: JobStatus


# Every status change a job can make, by the action that makes it:
# validating_files → queued → running → succeeded | failed | cancelled, plus paused.
TRANSITIONS: dict[str, Transition] = {
    "promote": Transition(("validating_files",), "queued"),
    "claim": Transition(("queued", "running"), "running"),  # a running job once its lease ran out
    "release": Transition(("running",), "queued"),
    "succeed": Transition(("running",), "succeeded"),
    "fail": Transition(("running",), "failed"),
    "pause": Transition(("running",), "paused"),
    "resume": Transition(("paused",), "queued"),
    "cancel": Transition(("validating_files", "queued", "running", "paused"), "cancelled"),
}
FINISHED: tuple[JobStatus, ...] = ("succeeded", "failed", "cancelled")
CLAIM_WINDOW = 32  # claimable rows (jobs, exports) locked and looked at at once, oldest first
# A client's request in OpenAI's words: the event "Fine-tuning job paused", the refusal
# "Job … is queued and cannot be resumed."
REQUESTED = {"cancel": "cancelled", "pause": "paused", "resume": "resumed"}


# ---------------------------------------------------------------------------------------------
# the worker's side


def promote_validated(db: Database) -> None:
    """Move jobs whose files passed validation at create time into the queue."""
    with db.session() as session:
        validating = select(JobRow).where(JobRow.status == "validating_files").with_for_update(skip_locked=True)
        for job in session.scalars(validating):
            _move(job, "promote")
            add_event(session, job.id, "Files validated, moving job to queued state")


def claim(
    db: Database, worker_id: str, lease_seconds: float, fits: Callable[[JobRow], bool] | None = None
) -> JobRow | None:
    """The oldest queued job, or a running one whose lease ran out, that `fits` this worker (its
    memory plan fits the worker's device: runner/worker.py), now leased to `worker_id`. The
    oldest CLAIM_WINDOW claimable jobs are locked and looked at in order; a job that fits no
    worker alive was refused when it was created, so one that fits none here waits for another."""
    now = time.time()
    with db.session() as session:
        candidates = session.scalars(claimable(JobRow, now))
        job = next((job for job in candidates if fits is None or fits(job)), None)
        if job is None:
            return None
        resumed = job.attempts > 0
        _move(job, "claim")
        job.lease_owner = worker_id
        job.lease_expires_at = now + lease_seconds
        job.attempts += 1
        if resumed:
            add_event(session, job.id, f"Fine-tuning job started again (attempt {job.attempts})")
        else:
            add_event(session, job.id, "Fine-tuning job started", data=None)
    return job


def claimable(table, now: float, running: str = "running"):
    """The rows of a leased queue (jobs, exports, eval runs: a `status`, a `lease_expires_at` and
    a `seq`) that may be claimed now: queued, or `running` (eval runs say "in_progress") under a
    lease that ran out; the oldest CLAIM_WINDOW, locked, skipping those another claimer holds."""
    return (
        select(table)
        .where(or_(table.status == "queued", (table.status == running) & (table.lease_expires_at < now)))
        .order_by(table.seq)
        .limit(CLAIM_WINDOW)
        .with_for_update(skip_locked=True)
    )


def owned(session, table, row_id: str, owner: str, running: str = "running"):
    """The `running` row of a leased queue (exports, eval runs), locked, if `owner` holds its lease."""
    row = session.scalar(select(table).where(table.id == row_id).with_for_update())
    if row is None or row.status != running or row.lease_owner != owner:
        return None
    return row


def finish(row, status: str, code: str | None = None, message: str | None = None) -> None:
    """End a leased queue's row (exports, eval runs): its lease given up, its end time and error set."""
    row.status, row.lease_owner, row.lease_expires_at = status, None, None
    row.finished_at = int(time.time())
    row.error = {"code": code, "message": message} if code else None


def renew(db: Database, job_id: str, worker_id: str, lease_seconds: float) -> JobStatus | None:
    """Extend the lease; returns the job's status, or None if another worker owns it now."""
    with db.session() as session:
        job = _lock(session, JobRow.id == job_id)
        if job is None or job.lease_owner != worker_id:
            return None
        if job.status == "running":
            job.lease_expires_at = time.time() + lease_seconds
        return job.status


def release(db: Database, job_id: str, worker_id: str) -> None:
    """Give a running job back to the queue; its next claim resumes from the last checkpoint."""
    with db.session() as session:
        job = _lock(session, JobRow.id == job_id)
        if job is not None and job.lease_owner == worker_id and _allows(job, "release"):
            _move(job, "release")


def succeed(
    db: Database, settings: Settings, job_id: str, adapter_key: str, trained_tokens: int, result_file_id: str
) -> bool:
    """The trainer is done: its adapter (already in the artifact storage) becomes the job's
    fine-tuned model. False, and nothing changes, if the job stopped running meanwhile."""
    with db.session() as session:
        job = _lock(session, JobRow.id == job_id)
        if not _allows(job, "succeed"):
            return False
        register_fine_tune(session, settings, job, job.planned_model_name, adapter_key)
        job.fine_tuned_model = job.planned_model_name
        job.trained_tokens = trained_tokens
        job.result_files = [result_file_id]
        _move(job, "succeed")
        add_event(session, job_id, f"New fine-tuned model created: {job.planned_model_name}")
        add_event(session, job_id, "The job has successfully completed")
    return True


def fail(db: Database, job_id: str, message: str) -> None:
    """The training failed; nothing changes if the job stopped running meanwhile."""
    with db.session() as session:
        job = _lock(session, JobRow.id == job_id)
        if not _allows(job, "fail"):
            return
        job.error = {"code": "training_failed", "message": message, "param": None}
        _move(job, "fail")
        add_event(session, job_id, f"Fine-tuning job failed: {message}", level="error")


# ---------------------------------------------------------------------------------------------
# the client's side: a refused request is a 400 in OpenAI's words


def cancel(db: Database, organization_id: str, job_id: str) -> JobRow:
    return _request(db, organization_id, job_id, "cancel")


def pause(db: Database, organization_id: str, job_id: str) -> JobRow:
    return _request(db, organization_id, job_id, "pause")


def resume(db: Database, organization_id: str, job_id: str) -> JobRow:
    """Back to the queue: the next claim resumes from the job's last checkpoint."""
    return _request(db, organization_id, job_id, "resume")


def _request(db: Database, organization_id: str, job_id: str, action: str) -> JobRow:
    with db.session() as session:
        # Locked: the worker may be finishing it right now.
        job = _lock(session, JobRow.id == job_id, JobRow.organization_id == organization_id)
        if job is None:
            raise job_not_found(job_id)
        if not _allows(job, action):
            raise OpenFTError(
                400,
                f"Job {job_id} is {job.status} and cannot be {REQUESTED[action]}.",
                param="fine_tuning_job_id",
            )
        _move(job, action)
        add_event(session, job_id, f"Fine-tuning job {REQUESTED[action]}")
    return job


# ---------------------------------------------------------------------------------------------


def _lock(session: Session, *where) -> JobRow | None:
    """The job row, locked until the transaction ends."""
    return session.scalar(select(JobRow).where(*where).with_for_update())


def _allows(job: JobRow, action: str) -> bool:
    return job.status in TRANSITIONS[action].sources


def _move(job: JobRow, action: str) -> None:
    """The one place a status changes. A job that stops running gives its lease up; one that
    ends gets its finished_at, and no estimate of when it will finish."""
    job.status = TRANSITIONS[action].target
    if job.status != "running":
        job.lease_owner = None
        job.lease_expires_at = None
    if job.status in FINISHED:
        job.finished_at = int(time.time())
        job.estimated_finish = None
