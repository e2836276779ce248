"""The model store: base models as HF folders under `<data dir>/models`, each registered in the
database so the API lists and serves it."""

from openft.models.bundled import import_bundled, is_imported
from openft.services.models import ModelService
from openft.settings import BUNDLED_MODEL, Settings
from openft.store.db import Database


def ensure_bundled_model(settings: Settings, db: Database) -> None:
    """Import the bundled model on first start (a one-time GGUF → safetensors conversion)."""
    if not is_imported(settings.models_dir):
        import_bundled(settings.models_dir)
    ModelService(settings, db).register_base(BUNDLED_MODEL)
