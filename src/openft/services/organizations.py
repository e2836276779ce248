"""Organizations: their names, and each one's switch and key for the upstream.

Relaying to the upstream is off for an organization until an operator switches it on, with
`openft orgs upstream NAME --enable` (stored) or OPENFT_UPSTREAM_ORGANIZATIONS (configuration,
which suits a keyless laptop install and its one local organization). An organization may have
its own upstream key, used in place of the server's; it is stored as given (the gateway sends it),
shown to no client and struck from what the upstream sends back (services/upstream.py)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from sqlalchemy import select

from openft.errors import OpenFTError
from openft.settings import Settings
from openft.store.db import Database
from openft.store.organizations import organization_named
from openft.store.tables import OrganizationRow

# The name is the `org` part of `ft:<base>:<org>:<suffix>:<id>`, which is split on ':'.
NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")


def check_name(name: str) -> None:
    if not NAME_PATTERN.match(name):
        raise OpenFTError(
            400,
            f"Organization names may contain only lowercase letters, digits, '-' and '_', start with a "
            f"letter or digit and have at most 64 characters; got '{name}'.",
            param="organization",
        )


@dataclass(frozen=True)
class UpstreamAccess:
    """Whether an organization's requests may go to the upstream, and on which key."""

    enabled: bool
    # The organization's own key; None: the server's (OPENFT_UPSTREAM_API_KEY).
    api_key: str | None


@dataclass(frozen=True)
class Organization:
    """An organization as `openft orgs list` shows it."""

    id: str
    name: str
    upstream: UpstreamAccess


class OrganizationService:
    def __init__(self, settings: Settings, db: Database):
        self.settings = settings
        self.db = db

    def get(self, organization_id: str) -> Organization:
        """A caller's organization (every caller has one: a key's, or the local one)."""
        with self.db.session() as session:
            row = session.scalar(select(OrganizationRow).where(OrganizationRow.id == organization_id))
        return self._local() if row is None else self._shown(row)

    def list(self) -> list[Organization]:
        """Every organization, the local one included where it has no row yet."""
        with self.db.session() as session:
            rows = list(session.scalars(select(OrganizationRow).order_by(OrganizationRow.seq)))
        shown = [self._shown(row) for row in rows]
        if self.settings.organization_id not in {row.id for row in rows}:
            shown.insert(0, self._local())
        return shown

    def set_upstream(
        self, name: str, *, enabled: bool | None = None, api_key: str | None = None, clear_key: bool = False
    ) -> Organization:
        """Switch relaying on or off for `name` (created if new), set or clear its own key;
        what is not given stays as it was."""
        check_name(name)
        if api_key is not None and not api_key.strip():
            raise OpenFTError(400, "The upstream key is empty.", param="api_key")
        with self.db.session() as session:
            row = organization_named(session, name, self.settings)
            if enabled is not None:
                row.upstream_enabled = enabled
            if api_key is not None:
                row.upstream_api_key = api_key.strip()
            elif clear_key:
                row.upstream_api_key = None
        return self._shown(row)

    def _shown(self, row: OrganizationRow) -> Organization:
        enabled = row.upstream_enabled or row.name in self.settings.upstream_organizations
        return Organization(row.id, row.name, UpstreamAccess(enabled, row.upstream_api_key))

    def _local(self) -> Organization:
        """The local organization of a keyless install, before anything gave it a row."""
        name = self.settings.organization
        access = UpstreamAccess(name in self.settings.upstream_organizations, None)
        return Organization(self.settings.organization_id, name, access)
