"""Chat completions, and the stored ones (OpenAI's `store: true` endpoints)."""

from typing import Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict

from openft.protocol.chat import ChatCompletion, ChatCompletionRequest
from openft.protocol.common import ListPage, Metadata, page
from openft.server.deps import Caller, Completions, Stored
from openft.services.stored_completions import stored_messages, stored_object

router = APIRouter(tags=["chat"])


@router.post("/v1/chat/completions", response_model=None)
async def create(
    request: Request, caller: Caller, completions: Completions, body: ChatCompletionRequest
) -> ChatCompletion | StreamingResponse | dict:
    reply = await completions.create(caller.organization_id, body, await request.json())
    if body.stream:
        return StreamingResponse(reply, media_type="text/event-stream")
    return reply


class StoredCompletion(BaseModel):
    model_config = ConfigDict(extra="allow")

    id: str


class MetadataUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    metadata: Metadata | None


def metadata_filter(request: Request) -> dict[str, str]:
    """`metadata[key]=value` query parameters, as the official client sends a `metadata` dict."""
    return {
        key[len("metadata[") : -1]: value
        for key, value in request.query_params.items()
        if key.startswith("metadata[") and key.endswith("]")
    }


# Not async: they read the database (FastAPI runs them in threads), after what this process has
# queued for it is written, so a client sees the completion it was just answered.
@router.get("/v1/chat/completions")
def list_stored(
    request: Request,
    caller: Caller,
    stored: Stored,
    model: str | None = None,
    after: str | None = None,
    limit: int = Query(20, ge=1, le=100),
    order: Literal["asc", "desc"] = "asc",
) -> ListPage[StoredCompletion]:
    stored.recorder.flush()
    rows, has_more = stored.list(
        caller.organization_id,
        limit=limit,
        after=after,
        order=order,
        model=model,
        metadata=metadata_filter(request),
    )
    return page([StoredCompletion(**stored_object(row)) for row in rows], has_more)


@router.get("/v1/chat/completions/{completion_id}")
def retrieve_stored(caller: Caller, stored: Stored, completion_id: str) -> dict:
    stored.recorder.flush()
    return stored_object(stored.get(caller.organization_id, completion_id))


@router.post("/v1/chat/completions/{completion_id}")
def update_stored(caller: Caller, stored: Stored, completion_id: str, body: MetadataUpdate) -> dict:
    stored.recorder.flush()
    return stored_object(stored.update(caller.organization_id, completion_id, body.metadata or {}))


@router.delete("/v1/chat/completions/{completion_id}")
def delete_stored(caller: Caller, stored: Stored, completion_id: str) -> dict:
    stored.recorder.flush()
    stored.delete(caller.organization_id, completion_id)
    return {"object": "chat.completion.deleted", "id": completion_id, "deleted": True}


@router.get("/v1/chat/completions/{completion_id}/messages")
def stored_messages_page(
    caller: Caller,
    stored: Stored,
    completion_id: str,
    after: str | None = None,
    limit: int = Query(20, ge=1, le=100),
    order: Literal["asc", "desc"] = "asc",
) -> ListPage[StoredCompletion]:
    stored.recorder.flush()
    messages = stored_messages(stored.get(caller.organization_id, completion_id))
    if order == "desc":
        messages.reverse()
    if after:
        positions = [message["id"] for message in messages]
        start = positions.index(after) + 1 if after in positions else len(messages)
        messages = messages[start:]
    return page([StoredCompletion(**message) for message in messages[:limit]], len(messages) > limit)
