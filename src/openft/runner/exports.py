"""An export's life: every change of its status, and of the lease an exporter holds it by, is made
here (as runner/jobs.py does for jobs).

The exports table is the queue: queued → running → succeeded | failed. An exporter claims the
oldest queued export, or a running one whose lease ran out (its exporter died, and its export
process with it), in one transaction, and renews the lease while the export process runs. An
export whose process was killed goes back to the queue, and one that has been started
`max_attempts` times fails. Each function is one transaction; rows that are read and then
written are locked (`FOR UPDATE`: PostgreSQL; SQLite's BEGIN IMMEDIATE already serializes).
"""

import time

from sqlalchemy import delete, select

from openft.runner.jobs import claimable, finish, owned
from openft.store.db import Database
from openft.store.tables import ExportRow


def claim(db: Database, owner: str, lease_seconds: float, max_attempts: int) -> ExportRow | None:
    """The oldest claimable export, now leased to `owner`. A running one whose lease ran out after
    its last allowed attempt fails instead of running again."""
    now = time.time()
    with db.session() as session:
        for export in session.scalars(claimable(ExportRow, now)):
            if export.attempts >= max_attempts:
                finish(export, "failed", "export_failed", f"The export process died {export.attempts} times.")
                continue
            export.status, export.lease_owner = "running", owner
            export.lease_expires_at = now + lease_seconds
            export.attempts += 1
            return export
    return None


def renew(db: Database, export_id: str, owner: str, lease_seconds: float) -> bool:
    """Extend the lease; False if the export is no longer this owner's to run (deleted, or
    claimed by another exporter after this one's lease ran out)."""
    with db.session() as session:
        export = owned(session, ExportRow, export_id, owner)
        if export is None:
            return False
        export.lease_expires_at = time.time() + lease_seconds
        return True


def release(db: Database, export_id: str, owner: str) -> None:
    """Back to the queue (its process was killed, or its exporter stops): it runs again."""
    with db.session() as session:
        export = owned(session, ExportRow, export_id, owner)
        if export is not None:
            export.status, export.lease_owner, export.lease_expires_at = "queued", None, None


def succeed(db: Database, export_id: str, owner: str, filename: str, size: int) -> bool:
    """The export's tar is published; False, and nothing changes, if the export was deleted or
    taken over meanwhile."""
    with db.session() as session:
        export = owned(session, ExportRow, export_id, owner)
        if export is None:
            return False
        export.filename, export.bytes = filename, size
        finish(export, "succeeded")
        return True


def fail(db: Database, export_id: str, owner: str, code: str, message: str) -> None:
    with db.session() as session:
        export = owned(session, ExportRow, export_id, owner)
        if export is not None:
            finish(export, "failed", code, message)


def remove(db: Database, organization_id: str, export_id: str) -> ExportRow | None:
    """Delete the organization's export row (its exporter, if it runs, sees that at its next
    renew and stops); the row as it was, or None."""
    with db.session() as session:
        where = (ExportRow.id == export_id, ExportRow.organization_id == organization_id)
        export = session.scalar(select(ExportRow).where(*where).with_for_update())
        if export is not None:
            session.execute(delete(ExportRow).where(*where))
        return export


def running_now(db: Database, export_ids: list[str]) -> set[str]:
    """Which of these exports are running under a live lease."""
    with db.session() as session:
        live = select(ExportRow.id).where(
            ExportRow.id.in_(export_ids), ExportRow.status == "running", ExportRow.lease_expires_at >= time.time()
        )
        return set(session.scalars(live))
