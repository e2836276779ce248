from typing import Literal

from fastapi import APIRouter, Form, Query, UploadFile
from fastapi.responses import Response

from openft.protocol.common import ListPage, page
from openft.protocol.files import FileDeleted, FileObject
from openft.server.deps import Caller, Files
from openft.services.files import file_object

router = APIRouter(prefix="/v1/files", tags=["files"])


# Not async: the service reads the spooled upload in chunks, which blocks; FastAPI runs this in a thread.
@router.post("")
def create(caller: Caller, files: Files, file: UploadFile, purpose: str = Form()) -> FileObject:
    return file_object(files.create(caller.organization_id, file.filename, purpose, file.file))


@router.get("")
def list_files(
    caller: Caller,
    files: Files,
    purpose: str | None = None,
    limit: int = Query(10000, ge=1, le=10000),
    order: Literal["asc", "desc"] = "desc",
    after: str | None = None,
) -> ListPage[FileObject]:
    rows, has_more = files.list(caller.organization_id, purpose, limit, order, after)
    return page([file_object(row) for row in rows], has_more)


@router.get("/{file_id}")
def retrieve(caller: Caller, files: Files, file_id: str) -> FileObject:
    return file_object(files.get(caller.organization_id, file_id))


@router.delete("/{file_id}")
def delete(caller: Caller, files: Files, file_id: str) -> FileDeleted:
    files.delete(caller.organization_id, file_id)
    return FileDeleted(id=file_id, deleted=True)


@router.get("/{file_id}/content")
def content(caller: Caller, files: Files, file_id: str) -> Response:
    return Response(files.content(caller.organization_id, file_id), media_type="application/octet-stream")
