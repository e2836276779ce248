"""Job events: the one way any part of openft tells a job's story to the client."""

import time
from typing import Any

from sqlalchemy.orm import Session

from openft import ids
from openft.store.tables import EventRow

# OpenAI sends `data: {}` on message events but `data: null` on "Fine-tuning job started".
EMPTY = object()


def add_event(
    session: Session,
    job_id: str,
    message: str,
    *,
    level: str = "info",
    type: str = "message",
    data: dict[str, Any] | None | object = EMPTY,
) -> EventRow:
    row = EventRow(
        id=ids.event_id(),
        job_id=job_id,
        created_at=int(time.time()),
        level=level,
        message=message,
        type=type,
        data={} if data is EMPTY else data,
    )
    session.add(row)
    return row
