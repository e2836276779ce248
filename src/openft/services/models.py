"""Model names: base models in the store, aliases that point at one (the OpenAI names, by
default at the default base; which base each means is configuration: models/store.py), and
fine-tunes (LoRA adapters) registered by finished jobs.

Base models and aliases are everyone's; a fine-tune (and each of its checkpoints) belongs to the
organization that trained it, and any other organization is told it does not exist."""

from __future__ import annotations

from sqlalchemy import or_, select

from openft.errors import OpenFTError, model_not_found
from openft.ids import parse_fine_tuned_model_name
from openft.inference.engine import ModelRef
from openft.models.store import SYSTEM_OWNER, alias_targets
from openft.protocol.models import Model
from openft.settings import Settings
from openft.store.db import Database
from openft.store.tables import ModelRow, OrganizationRow


class ModelService:
    def __init__(self, settings: Settings, db: Database):
        self.settings = settings
        self.db = db

    def base_for(self, requested: str) -> str:
        """The base model that trains when a job asks for `requested`; 404 if there is none."""
        with self.db.session() as session:
            name = alias_targets(self.settings, session).get(requested, requested)
            row = session.scalar(select(ModelRow).where(ModelRow.id == name))
        if row is None or row.adapter_key is not None:
            raise model_not_found(requested)
        return row.base_model

    def training_start(self, organization_id: str, requested: str) -> tuple[str, str | None]:
        """What a job for `requested` trains: (base model, None) for a base or an alias; for a
        fine-tune (`ft:…`, a checkpoint's too) the caller may see, (its base, its adapter's key),
        the adapter the job goes on training. 404 otherwise."""
        if not requested.startswith("ft:"):
            return self.base_for(requested), None
        row = self.get(organization_id, requested)
        if row.adapter_key is None:
            raise model_not_found(requested)
        return row.base_model, row.adapter_key

    def list(self, organization_id: str) -> list[ModelRow]:
        """Every base and the caller's fine-tunes, then every alias of a registered base."""
        with self.db.session() as session:
            rows = list(session.scalars(_visible_to(organization_id).order_by(ModelRow.seq)))
            aliases = alias_targets(self.settings, session)
        bases = {row.id: row for row in rows if row.id == row.base_model}
        models = [row for row in rows if row.id == row.base_model or row.adapter_key is not None]
        return models + [self._alias_row(alias, bases[base]) for alias, base in aliases.items() if base in bases]

    def get(self, organization_id: str, name: str) -> ModelRow:
        with self.db.session() as session:
            base = alias_targets(self.settings, session).get(name)
            if base is not None:
                row = session.scalar(select(ModelRow).where(ModelRow.id == base))
                row = row and self._alias_row(name, row)
            else:
                row = session.scalar(_visible_to(organization_id).where(ModelRow.id == name))
        if row is None:
            raise model_not_found(name)
        return row

    def resolve(self, organization_id: str, name: str) -> ModelRef:
        """What model `name` means to the inference engine."""
        row = self.get(organization_id, name)
        return ModelRef(base_model=row.base_model, adapter_key=row.adapter_key)

    def serves(self, organization_id: str, name: str) -> bool:
        """Whether `name` is served here without the OpenAI names' fallback to the default base: a
        base, an alias that configuration or `openft models add --alias` set, or the caller's
        fine-tune. Any other name may be the upstream's (services/relay.py)."""
        if name in self.settings.model_aliases:
            return True
        with self.db.session() as session:
            return session.scalar(_visible_to(organization_id).where(ModelRow.id == name)) is not None

    def in_namespace(self, name: str) -> bool:
        """Whether `name` is in this server's `ft:` namespace, `ft:<a base here>:<an organization
        here>:…`, whether or not such a fine-tune exists: another organization's, a deleted one,
        a mistyped one. The gateway never relays these (services/relay.py)."""
        if not name.startswith("ft:") or name.count(":") < 4:
            return False
        parts = parse_fine_tuned_model_name(name)
        with self.db.session() as session:
            if session.scalar(select(ModelRow.seq).where(ModelRow.id == name)) is not None:
                return True
            base = select(ModelRow.seq).where(ModelRow.id == parts.base, ModelRow.base_model == parts.base)
            organization = select(OrganizationRow.seq).where(OrganizationRow.name == parts.organization)
            ours = parts.organization == self.settings.organization or session.scalar(organization) is not None
            return ours and session.scalar(base) is not None

    def owner(self, name: str) -> str | None:
        """The organization that owns fine-tune `name`; None for base models and unknown names.
        For trusted local callers (the CLI on its own data dir), not for requests."""
        row = self._row(name)
        return row.organization_id if row else None

    def delete(self, organization_id: str, name: str) -> None:
        """Delete a fine-tune the caller owns; base models and aliases cannot be deleted."""
        row = self.get(organization_id, name)
        if row.organization_id is None:
            raise OpenFTError(
                403,
                f"The model `{name}` is a base model and cannot be deleted; only fine-tuned models can.",
                param="model",
            )
        with self.db.session() as session:
            session.delete(session.merge(row))

    def _row(self, name: str) -> ModelRow | None:
        with self.db.session() as session:
            return session.scalar(select(ModelRow).where(ModelRow.id == name))

    @staticmethod
    def _alias_row(alias: str, target: ModelRow) -> ModelRow:
        return ModelRow(id=alias, created=target.created, owned_by=SYSTEM_OWNER, base_model=target.base_model)


def _visible_to(organization_id: str):
    """Models `organization_id` may see: every base model and its own fine-tunes."""
    return select(ModelRow).where(or_(ModelRow.organization_id.is_(None), ModelRow.organization_id == organization_id))


def model_object(row: ModelRow) -> Model:
    return Model(
        id=row.id,
        created=row.created,
        owned_by=row.owned_by,
        root=row.base_model,
        parent=row.base_model if row.adapter_key else None,
    )
