"""openft's own stored-completion routes, next to OpenAI's (routes/chat.py): the list with the
dashboard's filters (dates, text), and the export that turns a selection into training data."""

from typing import Literal

from fastapi import APIRouter, Query, Request

from openft.protocol.common import ListPage, page
from openft.server.deps import Caller, Distill, Stored
from openft.server.routes.chat import StoredCompletion, metadata_filter
from openft.services.distill import MAX_TIME, ExportParams
from openft.services.stored_completions import stored_object

router = APIRouter(prefix="/v1/openft/chat/completions", tags=["openft"])


@router.get("")
def search(
    request: Request,
    caller: Caller,
    stored: Stored,
    model: str | None = None,
    since: int | None = Query(None, ge=0, le=MAX_TIME),
    until: int | None = Query(None, ge=0, le=MAX_TIME),
    text: str | None = None,
    after: str | None = None,
    limit: int = Query(20, ge=1, le=100),
    order: Literal["asc", "desc"] = "desc",
) -> ListPage[StoredCompletion]:
    """Stored completions, newest first, by model, `metadata[key]=value`, creation time
    (`since` ≤ created_at < `until`, Unix seconds) and text in the messages or the reply."""
    stored.recorder.flush()
    rows, has_more = stored.list(
        caller.organization_id,
        limit=limit,
        after=after,
        order=order,
        model=model,
        metadata=metadata_filter(request),
        since=since,
        until=until,
        text=text,
    )
    return page([StoredCompletion(**stored_object(row)) for row in rows], has_more)


# Not async: it reads, uploads and tokenizes (the data check) for seconds.
@router.post("/export")
def export(caller: Caller, stored: Stored, distill: Distill, body: ExportParams) -> dict:
    """The selected completions as an uploaded training file (checked), an optional held-out
    file for the eval, and an optional fine-tuning job on it (services/distill.py)."""
    stored.recorder.flush()
    return distill.export(caller, body)
