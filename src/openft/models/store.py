"""The model store: base models as HF folders under `<data dir>/models`, each registered in the
database so the API lists and serves it, and the fine-tunes trained on them (LoRA adapters in
the artifact storage), registered by the jobs that train them."""

import time

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from openft.models.bundled import import_bundled, is_imported
from openft.settings import BUNDLED_MODEL, Settings
from openft.store.db import Database
from openft.store.organizations import organization_name
from openft.store.tables import JobRow, ModelRow

# `owned_by` of base models and of the OpenAI aliases that point at one.
SYSTEM_OWNER = "system"


def ensure_bundled_model(settings: Settings, db: Database) -> None:
    """Import the bundled model on first start (a one-time GGUF → safetensors conversion)."""
    if not is_imported(settings.models_dir):
        import_bundled(settings.models_dir)
    register_base(db, BUNDLED_MODEL)


def register_base(db: Database, name: str) -> None:
    """List the base model `name` (a folder of the store) as a model of every organization."""
    try:
        with db.session() as session:
            if session.scalar(select(ModelRow).where(ModelRow.id == name)) is None:
                session.add(ModelRow(id=name, created=int(time.time()), owned_by=SYSTEM_OWNER, base_model=name))
    except IntegrityError:
        pass  # on PostgreSQL, another process starting at the same time registered it first


def register_fine_tune(session: Session, settings: Settings, job: JobRow, name: str, adapter_key: str) -> None:
    """Serve the adapter at `adapter_key` (a key in the artifact storage) as `name`, a model of
    the job's organization."""
    row = session.scalar(select(ModelRow).where(ModelRow.id == name))
    if row is None:
        owner = organization_name(session, job.organization_id, settings.organization)
        row = ModelRow(
            id=name,
            created=int(time.time()),
            owned_by=owner,
            base_model=job.base_model,
            organization_id=job.organization_id,
        )
        session.add(row)
    row.adapter_key = adapter_key
    row.job_id = job.id
