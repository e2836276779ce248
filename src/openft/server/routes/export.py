from fastapi import APIRouter
from fastapi.responses import StreamingResponse

from openft.protocol.exports import Export, ExportCreateParams, ExportDeleted
from openft.server.deps import Caller, Exports
from openft.services.exports import export_object

router = APIRouter(prefix="/v1/openft/exports", tags=["openft"])


# Answers at once with the queued export; an exporter builds it (runner/exporter.py).
@router.post("")
def create(caller: Caller, exports: Exports, body: ExportCreateParams) -> Export:
    return export_object(exports.create(caller.organization_id, body))


@router.get("/{export_id}")
def retrieve(caller: Caller, exports: Exports, export_id: str) -> Export:
    return export_object(exports.get(caller.organization_id, export_id))


# The tar of a succeeded export (export/archive.py), streamed from the artifact storage.
@router.get("/{export_id}/content", response_class=StreamingResponse)
def content(caller: Caller, exports: Exports, export_id: str) -> StreamingResponse:
    result = exports.result(caller.organization_id, export_id)
    return StreamingResponse(result.chunks(), media_type="application/x-tar", headers=result.headers())


@router.delete("/{export_id}")
def delete(caller: Caller, exports: Exports, export_id: str) -> ExportDeleted:
    return exports.delete(caller.organization_id, export_id)
