from fastapi import APIRouter
from fastapi.responses import StreamingResponse
from starlette.background import BackgroundTask

from openft.export.spec import Format, Quantization
from openft.server.deps import Caller, Exports

router = APIRouter(prefix="/v1/openft/models", tags=["openft"])


# Builds the whole export before answering (a minute for a GGUF of the bundled model), then
# streams it as a tar (services/exports.py).
@router.get("/{model:path}/export", response_class=StreamingResponse)
def export(
    caller: Caller, exports: Exports, model: str, format: Format, quantization: Quantization | None = None
) -> StreamingResponse:
    archive = exports.archive(caller.organization_id, model, format, quantization)
    return StreamingResponse(
        archive.chunks(),
        media_type="application/x-tar",
        headers=archive.headers(),
        background=BackgroundTask(archive.close),
    )
