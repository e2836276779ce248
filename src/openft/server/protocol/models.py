"""Model wire types, after openai-python's `types/model.py` (plus `root`/`parent`, as vLLM does)."""

from typing import Literal

from pydantic import BaseModel

from openft.store.tables import ModelRow


class Model(BaseModel):
    id: str
    created: int
    object: Literal["model"] = "model"
    owned_by: str
    # openft extensions: what the name really serves
    root: str
    parent: str | None = None


class ModelDeleted(BaseModel):
    id: str
    object: Literal["model"] = "model"
    deleted: bool


def to_wire(row: ModelRow) -> Model:
    return Model(
        id=row.id,
        created=row.created,
        owned_by=row.owned_by,
        root=row.base_model,
        parent=row.base_model if row.adapter_path else None,
    )
