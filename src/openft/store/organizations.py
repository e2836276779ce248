"""Organizations by id or name, for code that holds one and needs the other (the worker naming
owners, keys and upstream switches created for a name)."""

import time

from sqlalchemy import select
from sqlalchemy.orm import Session

from openft import ids
from openft.settings import Settings
from openft.store.tables import OrganizationRow


def organization_name(session: Session, organization_id: str, local_name: str) -> str:
    """The name of `organization_id`; `local_name` for the local organization without a row."""
    name = session.scalar(select(OrganizationRow.name).where(OrganizationRow.id == organization_id))
    return name or local_name


def organization_named(session: Session, name: str, settings: Settings) -> OrganizationRow:
    """The organization called `name`, created if new. The local organization keeps its id, so
    what it made before it had a row stays its own."""
    row = session.scalar(select(OrganizationRow).where(OrganizationRow.name == name))
    if row is None:
        org_id = settings.organization_id if name == settings.organization else ids.organization_id()
        row = OrganizationRow(id=org_id, name=name, created_at=int(time.time()))
        session.add(row)
        session.flush()
    return row
