"""API keys and the organizations they act for.

With no key in the store and no `OPENFT_API_KEYS`, every caller is the one local organization
(`settings.organization_id`, named `settings.organization`): a laptop install needs no setup.
Once a key has been created, every `/v1` request needs `Authorization: Bearer <key>` and acts for
that key's organization. A revoked key still counts as "a key exists": revoking the last key
locks the server rather than opening it.

Keys are stored as their sha256; the secret is shown once, by `openft keys create`.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from dataclasses import dataclass

from sqlalchemy import select

from openft import ids
from openft.errors import OpenFTError, invalid_api_key, missing_api_key
from openft.services.organizations import check_name
from openft.settings import Settings
from openft.store.db import Database
from openft.store.organizations import organization_named
from openft.store.tables import ApiKeyRow, OrganizationRow


@dataclass(frozen=True)
class Caller:
    """Who a request acts for: the organization that owns what it creates and all it can see."""

    organization_id: str  # "org-…"
    organization: str  # the slug in fine-tuned model names


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


class KeyService:
    def __init__(self, settings: Settings, db: Database):
        self.settings = settings
        self.db = db

    def local(self) -> Caller:
        return Caller(self.settings.organization_id, self.settings.organization)

    def authenticate(self, key: str | None) -> Caller:
        """The caller a bearer key (None when the request had none) acts for; 401 when keys are
        required and this one is missing, unknown or revoked."""
        with self.db.session() as session:
            found = None
            if key:
                found = session.scalar(
                    select(OrganizationRow)
                    .join(ApiKeyRow, ApiKeyRow.organization_id == OrganizationRow.id)
                    .where(ApiKeyRow.key_hash == hash_key(key), ApiKeyRow.revoked_at.is_(None))
                )
            any_key = found is not None or session.scalar(select(ApiKeyRow.seq).limit(1)) is not None
        if found is not None:
            return Caller(found.id, found.name)
        if key and any(hmac.compare_digest(key.encode(), known.encode()) for known in self.settings.api_keys):
            return self.local()
        if not any_key and not self.settings.api_keys:
            return self.local()
        if not key:
            raise missing_api_key()
        raise invalid_api_key(key)

    def required(self) -> bool:
        """Whether requests need a key: one is configured, or one was ever created."""
        if self.settings.api_keys:
            return True
        with self.db.session() as session:
            return session.scalar(select(ApiKeyRow.seq).limit(1)) is not None

    def create(self, organization: str) -> tuple[str, ApiKeyRow, OrganizationRow]:
        """A new key for `organization` (created if new): the secret, its row and the organization's."""
        check_name(organization)
        secret = ids.api_key()
        with self.db.session() as session:
            org = organization_named(session, organization, self.settings)
            row = ApiKeyRow(
                id=ids.api_key_id(),
                organization_id=org.id,
                key_hash=hash_key(secret),
                redacted=f"{secret[:10]}…{secret[-4:]}",
                created_at=int(time.time()),
            )
            session.add(row)
        return secret, row, org

    def list(self) -> list[tuple[ApiKeyRow, OrganizationRow]]:
        query = (
            select(ApiKeyRow, OrganizationRow)
            .join(OrganizationRow, ApiKeyRow.organization_id == OrganizationRow.id)
            .order_by(ApiKeyRow.seq)
        )
        with self.db.session() as session:
            return [(key, org) for key, org in session.execute(query)]

    def revoke(self, key_id: str) -> ApiKeyRow:
        with self.db.session() as session:
            row = session.scalar(select(ApiKeyRow).where(ApiKeyRow.id == key_id))
            if row is None:
                raise OpenFTError(404, f"No such API key: {key_id}. `openft keys list` shows the keys.", param="key_id")
            if row.revoked_at is None:
                row.revoked_at = int(time.time())
        return row
