from fastapi import APIRouter

from openft.protocol.models import Model, ModelDeleted
from openft.server.deps import Caller, Models
from openft.services.models import model_object

router = APIRouter(prefix="/v1/models", tags=["models"])


@router.get("")
def list_models(caller: Caller, models: Models) -> dict:
    return {"object": "list", "data": [model_object(row) for row in models.list(caller.organization_id)]}


# `path` converter: fine-tuned names contain ':' and users may URL-encode them.
@router.get("/{model:path}")
def retrieve(caller: Caller, models: Models, model: str) -> Model:
    return model_object(models.get(caller.organization_id, model))


@router.delete("/{model:path}")
def delete(caller: Caller, models: Models, model: str) -> ModelDeleted:
    models.delete(caller.organization_id, model)
    return ModelDeleted(id=model, deleted=True)
