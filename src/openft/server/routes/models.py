from fastapi import APIRouter

from openft.server.deps import Models, Organization
from openft.server.protocol.models import Model, ModelDeleted, to_wire

router = APIRouter(prefix="/v1/models", tags=["models"])


@router.get("")
def list_models(_: Organization, models: Models) -> dict:
    return {"object": "list", "data": [to_wire(row) for row in models.list()]}


# `path` converter: fine-tuned names contain ':' and users may URL-encode them.
@router.get("/{model:path}")
def retrieve(_: Organization, models: Models, model: str) -> Model:
    return to_wire(models.get(model))


@router.delete("/{model:path}")
def delete(_: Organization, models: Models, model: str) -> ModelDeleted:
    models.delete(model)
    return ModelDeleted(id=model, deleted=True)
