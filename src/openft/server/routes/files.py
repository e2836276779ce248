from typing import Literal

from fastapi import APIRouter, Form, Query, UploadFile
from fastapi.responses import Response

from openft.server.deps import Files, Organization
from openft.server.protocol.common import page
from openft.server.protocol.files import FileDeleted, FileObject, to_wire

router = APIRouter(prefix="/v1/files", tags=["files"])


@router.post("")
async def create(organization: Organization, files: Files, file: UploadFile, purpose: str = Form()) -> FileObject:
    content = await file.read()
    return to_wire(files.create(organization, file.filename or "file", purpose, content))


@router.get("")
def list_files(
    organization: Organization,
    files: Files,
    purpose: str | None = None,
    limit: int = Query(10000, ge=1, le=10000),
    order: Literal["asc", "desc"] = "desc",
    after: str | None = None,
) -> dict:
    rows, has_more = files.list(organization, purpose, limit, order, after)
    return page([to_wire(row) for row in rows], has_more)


@router.get("/{file_id}")
def retrieve(organization: Organization, files: Files, file_id: str) -> FileObject:
    return to_wire(files.get(organization, file_id))


@router.delete("/{file_id}")
def delete(organization: Organization, files: Files, file_id: str) -> FileDeleted:
    files.delete(organization, file_id)
    return FileDeleted(id=file_id, deleted=True)


@router.get("/{file_id}/content")
def content(organization: Organization, files: Files, file_id: str) -> Response:
    return Response(files.content(organization, file_id), media_type="application/octet-stream")
