"""Organization names for code that holds only an organization id (the worker, naming owners)."""

from sqlalchemy import select
from sqlalchemy.orm import Session

from openft.store.tables import OrganizationRow


def organization_name(session: Session, organization_id: str, local_name: str) -> str:
    """The name of `organization_id`; `local_name` for the local organization without a row."""
    name = session.scalar(select(OrganizationRow.name).where(OrganizationRow.id == organization_id))
    return name or local_name
