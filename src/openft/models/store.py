"""The model store: base models as HF folders under `<data dir>/models`, each registered in the
database so the API lists and serves it."""

import time

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from openft.models.bundled import import_bundled, is_imported
from openft.settings import BUNDLED_MODEL, Settings
from openft.store.db import Database
from openft.store.tables import ModelRow

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
