"""Stored chat completions (OpenAI's `store: true`): kept per organization, listed, filtered by
model and metadata, updated (metadata only), deleted, and expired after the retention period.

Storing must never slow a reply, so a completion is handed to a `Recorder` as the response goes
out and written by its thread, many rows per transaction when traffic is heavy. Reads made by
this process wait for what is queued (`flush`), so a client that lists right after a reply sees
it; a clean shutdown drains the queue (`close`, from the server's lifespan).

Another organization's completions are absent to a caller (404), and an expired one is gone
for every read even before the sweep deletes its row."""

from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, func, insert, select

from openft.data.chat_format import content_text
from openft.errors import OpenFTError
from openft.settings import Settings
from openft.store.db import Database
from openft.store.pages import fetch_page
from openft.store.tables import StoredCompletionRow

log = logging.getLogger("openft.stored_completions")
DAY = 86400
# The request fields a stored completion shows next to its response, as OpenAI's list does.
SHOWN_PARAMETERS = (
    "seed",
    "top_p",
    "temperature",
    "presence_penalty",
    "frequency_penalty",
    "tool_choice",
    "tools",
    "service_tier",
    "response_format",
)


@dataclass
class Record:
    """A completion to store: the request as the client sent it and the `chat.completion` answered."""

    organization_id: str
    model: str
    metadata: dict[str, str]
    request: dict[str, Any]
    response: dict[str, Any]
    complete: bool
    served_by: str
    created_at: int

    def values(self) -> dict[str, Any]:
        """The row's values, by attribute name."""
        return dict(
            id=self.response["id"],
            organization_id=self.organization_id,
            created_at=self.created_at,
            model=self.model,
            completion_metadata=self.metadata,
            request=self.request,
            response=self.response,
            status="completed" if self.complete else "incomplete",
            search_text=search_text(self.request, self.response),
            served_by=self.served_by,
        )


class StoredCompletions:
    def __init__(self, settings: Settings, db: Database):
        self.settings = settings
        self.db = db
        self.recorder = Recorder(self)

    def add(self, records: list[Record]) -> None:
        # One bulk INSERT: the writer shares the server's interpreter, so it should be brief.
        with self.db.session() as session:
            session.execute(insert(StoredCompletionRow), [record.values() for record in records])

    def get(self, organization_id: str, completion_id: str) -> StoredCompletionRow:
        with self.db.session() as session:
            row = session.scalar(self._visible(organization_id).where(StoredCompletionRow.id == completion_id))
        if row is None:
            raise OpenFTError(
                404,
                f"Chat completion with id '{completion_id}' not found.",
                param="completion_id",
                code="not_found",
            )
        return row

    def list(
        self,
        organization_id: str,
        *,
        limit: int = 20,
        after: str | None = None,
        order: str = "asc",
        model: str | None = None,
        metadata: dict[str, str] | None = None,
        since: int | None = None,
        until: int | None = None,
        text: str | None = None,
        ids: list[str] | None = None,
        completed_only: bool = False,
    ) -> tuple[list[StoredCompletionRow], bool]:
        query = self._visible(organization_id)
        if model:
            query = query.where(StoredCompletionRow.model == model)
        for key, value in (metadata or {}).items():
            query = query.where(StoredCompletionRow.completion_metadata[key].as_string() == value)
        if since is not None:
            query = query.where(StoredCompletionRow.created_at >= since)
        if until is not None:
            query = query.where(StoredCompletionRow.created_at < until)
        if text:
            query = query.where(StoredCompletionRow.search_text.contains(text.lower(), autoescape=True))
        if ids is not None:
            query = query.where(StoredCompletionRow.id.in_(ids))
        if completed_only:
            query = query.where(StoredCompletionRow.status == "completed")
        ascending = order == "asc"
        if after:
            cursor = self.get(organization_id, after).seq
            query = query.where(StoredCompletionRow.seq > cursor if ascending else StoredCompletionRow.seq < cursor)
        ordered = StoredCompletionRow.seq.asc() if ascending else StoredCompletionRow.seq.desc()
        return fetch_page(self.db, query.order_by(ordered), limit)

    def update(self, organization_id: str, completion_id: str, metadata: dict[str, str]) -> StoredCompletionRow:
        """Replaces the metadata, the only change OpenAI allows."""
        with self.db.session() as session:
            row = session.merge(self.get(organization_id, completion_id))
            row.completion_metadata = metadata
        return row

    def delete(self, organization_id: str, completion_id: str) -> None:
        row = self.get(organization_id, completion_id)
        with self.db.session() as session:
            session.execute(delete(StoredCompletionRow).where(StoredCompletionRow.seq == row.seq))

    def expire(self, now: float | None = None) -> int:
        """Deletes every completion older than the retention period; returns how many."""
        with self.db.session() as session:
            expired = StoredCompletionRow.created_at < self._oldest(now)
            result = session.execute(delete(StoredCompletionRow).where(expired))
        return result.rowcount

    def count(self, organization_id: str) -> int:
        with self.db.session() as session:
            return session.scalar(self._visible(organization_id).with_only_columns(func.count()))

    def _oldest(self, now: float | None = None) -> int:
        """The earliest creation time still kept."""
        return int((time.time() if now is None else now) - self.settings.stored_completions_retention_days * DAY)

    def _visible(self, organization_id: str):
        return select(StoredCompletionRow).where(
            StoredCompletionRow.organization_id == organization_id, StoredCompletionRow.created_at >= self._oldest()
        )


class Recorder:
    """Writes records on its own thread, after the replies went out: `record` only queues. The
    thread starts with the first record and also sweeps out expired completions."""

    def __init__(self, store: StoredCompletions):
        self.store = store
        self._queue: queue.Queue[Record | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._closed = False
        self._swept_at = 0.0

    def record(self, record: Record) -> None:
        with self._lock:
            if self._closed:  # a stream dropped during shutdown: written now, never lost
                self.store.add([record])
                return
            if self._thread is None:
                self._thread = threading.Thread(target=self._write_forever, name="openft-recorder", daemon=True)
                self._thread.start()
            self._queue.put(record)

    def flush(self) -> None:
        """Returns once everything queued so far is written."""
        self._queue.join()

    def start_sweeping(self) -> None:
        """Expire now and then periodically, whether or not anything is recorded."""
        with self._lock:
            if self._thread is None and not self._closed:
                self._thread = threading.Thread(target=self._write_forever, name="openft-recorder", daemon=True)
                self._thread.start()

    def close(self) -> None:
        """Writes what is queued and stops the thread."""
        with self._lock:
            self._closed = True
            thread = self._thread
        if thread is not None:
            self._queue.put(None)
            thread.join()

    def _sweep_seconds(self) -> float:
        # Often enough that a row outlives its retention by a tenth of it at most, at most hourly.
        return min(3600.0, max(1.0, self.store.settings.stored_completions_retention_days * DAY / 10))

    def _write_forever(self) -> None:
        while True:
            if time.monotonic() - self._swept_at >= self._sweep_seconds():
                self._sweep()
            try:
                first = self._queue.get(timeout=self._sweep_seconds())
            except queue.Empty:
                continue
            batch = [first]
            while len(batch) < 500:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            records = [record for record in batch if record is not None]
            try:
                if records:
                    self.store.add(records)
            except Exception:
                log.exception("could not store %d chat completions", len(records))
            finally:
                for _ in batch:
                    self._queue.task_done()
            if None in batch:
                return

    def _sweep(self) -> None:
        self._swept_at = time.monotonic()
        try:
            if expired := self.store.expire():
                log.info("deleted %d stored chat completions past their retention", expired)
        except Exception:
            log.exception("could not expire stored chat completions")


def stored_object(row: StoredCompletionRow) -> dict[str, Any]:
    """The `chat.completion` as OpenAI lists a stored one: the response, the request's parameters
    and the metadata; `status` says whether the reply is complete."""
    shown = {name: row.request.get(name) for name in SHOWN_PARAMETERS}
    return {
        **row.response,
        **shown,
        "input_user": row.request.get("user"),
        "request_id": None,
        "metadata": row.completion_metadata,
        "status": row.status,
    }


def stored_messages(row: StoredCompletionRow) -> list[dict[str, Any]]:
    """The request's messages as OpenAI's `messages` list shows them, each with an id."""
    shown = []
    for index, message in enumerate(row.request.get("messages", [])):
        content = message.get("content")
        parts = content if isinstance(content, list) else None
        shown.append(
            {
                **message,
                "id": f"{row.id}-{index}",
                "content": content_text(content) if parts is not None else content,
                "content_parts": parts,
            }
        )
    return shown


def search_text(request: dict[str, Any], response: dict[str, Any]) -> str:
    texts = [content_text(message.get("content")) or "" for message in request.get("messages", [])]
    texts += [(choice.get("message") or {}).get("content") or "" for choice in response.get("choices", [])]
    return "\n".join(texts).lower()
