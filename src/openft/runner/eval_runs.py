"""An eval run's life: every change of its status, and of the lease a runner holds it by, is made
here (as runner/jobs.py does for jobs and runner/exports.py for exports).

The eval_runs table is the queue: queued → in_progress → completed | failed | canceled. A
server's eval runner claims the oldest queued run, or an in-progress one whose lease ran out (its
server died), in one transaction, and renews the lease while it grades. The rows already graded
are kept (output items), so a run taken over goes on where the last runner stopped. A run
started `max_attempts` times fails. Each function is one transaction on the locked row.
"""

import time

from sqlalchemy import delete, select

from openft.errors import OpenFTError
from openft.runner.jobs import claimable, finish, owned
from openft.store.db import Database
from openft.store.tables import EvalOutputItemRow, EvalRunRow

ENDED = ("completed", "failed", "canceled")


def claim(
    db: Database, owner: str, lease_seconds: float, max_attempts: int, only: str | None = None
) -> EvalRunRow | None:
    """The oldest claimable run (or the run `only`, if it is claimable), now leased to `owner`;
    one whose runner died after its last allowed attempt fails instead."""
    now = time.time()
    query = claimable(EvalRunRow, now, running="in_progress")
    if only is not None:
        query = query.where(EvalRunRow.id == only)
    with db.session() as session:
        for run in session.scalars(query):
            if run.attempts >= max_attempts:
                finish(run, "failed", "run_failed", f"The run's runner stopped {run.attempts} times.")
                continue
            run.status, run.lease_owner = "in_progress", owner
            run.lease_expires_at = now + lease_seconds
            run.attempts += 1
            return run
    return None


def renew(db: Database, run_id: str, owner: str, lease_seconds: float) -> bool:
    """Extend the lease; False if the run is no longer this owner's to grade (canceled, deleted,
    or taken over after this owner's lease ran out)."""
    with db.session() as session:
        run = owned(session, EvalRunRow, run_id, owner, "in_progress")
        if run is None:
            return False
        run.lease_expires_at = time.time() + lease_seconds
        return True


def record(db: Database, item: EvalOutputItemRow, owner: str) -> bool:
    """Stores a graded row of a run `owner` holds; False, and nothing is stored, once the run is
    no longer its own (canceled, deleted, taken over): a row finished after a cancel is dropped."""
    with db.session() as session:
        if owned(session, EvalRunRow, item.run_id, owner, "in_progress") is None:
            return False
        session.add(item)
        return True


def release(db: Database, run_id: str, owner: str) -> None:
    """Back to the queue (its server stops): the next runner goes on from its output items. A
    release does not count as an attempt."""
    with db.session() as session:
        run = owned(session, EvalRunRow, run_id, owner, "in_progress")
        if run is not None:
            run.status, run.lease_owner, run.lease_expires_at = "queued", None, None
            run.attempts -= 1


def complete(db: Database, run_id: str, owner: str, results: dict) -> bool:
    """The run's counts (`result_counts`, `per_testing_criteria_results`, `per_model_usage`) and
    its end; False, and nothing changes, if it was canceled or taken over meanwhile."""
    with db.session() as session:
        run = owned(session, EvalRunRow, run_id, owner, "in_progress")
        if run is None:
            return False
        for name, value in results.items():
            setattr(run, name, value)
        finish(run, "completed")
        return True


def fail(db: Database, run_id: str, owner: str, code: str, message: str) -> None:
    with db.session() as session:
        run = owned(session, EvalRunRow, run_id, owner, "in_progress")
        if run is not None:
            finish(run, "failed", code, message)


def cancel(db: Database, organization_id: str, eval_id: str, run_id: str) -> EvalRunRow | None:
    """Cancels a queued or in-progress run (its runner sees that at its next renew and stops);
    the run, or None if the organization has no such run. Canceling an ended run is a 400."""
    with db.session() as session:
        run = session.scalar(run_query(organization_id, eval_id, run_id).with_for_update())
        if run is None:
            return None
        if run.status in ENDED:
            raise OpenFTError(
                400, f"Run {run_id} is already {run.status}; only a queued or running run can be canceled."
            )
        finish(run, "canceled")
        return run


def remove(db: Database, organization_id: str, eval_id: str, run_id: str) -> bool:
    """Deletes the run and its output items; False if the organization has no such run."""
    with db.session() as session:
        run = session.scalar(run_query(organization_id, eval_id, run_id).with_for_update())
        if run is None:
            return False
        session.execute(delete(EvalOutputItemRow).where(EvalOutputItemRow.run_id == run_id))
        session.execute(delete(EvalRunRow).where(EvalRunRow.id == run_id))
        return True


def run_query(organization_id: str, eval_id: str, run_id: str):
    """The organization's run of that eval."""
    return select(EvalRunRow).where(
        EvalRunRow.id == run_id, EvalRunRow.eval_id == eval_id, EvalRunRow.organization_id == organization_id
    )
