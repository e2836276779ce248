"""Model wire types, after openai-python's `types/model.py` (plus `root`/`parent`, as vLLM does)."""

from typing import Literal

from pydantic import BaseModel


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
