"""Stored chat completions (OpenAI's `store: true`): kept per organization, listed, filtered by
model and metadata, updated (metadata only), deleted, and expired after the retention period.

Storing must never slow a reply, and never lose one. A completion is handed to a `Recorder`
before the client has all of its reply; the recorder appends it to this process's journal on
disk (store/journal.py: one write, no transaction, no lock shared with other processes) and
queues it for its thread, which writes many rows per transaction when traffic is heavy. A
server killed before the thread wrote them leaves them in its journal, and the next start on the
data dir writes them (`recover`). A clean shutdown drains the queue (`close`, from the lifespan).

A transaction that fails is tried again one record at a time, so a bad record costs only itself
(logged). Reads made by this process first wait for the records queued before they began
(`flush`), so a client that lists right after a reply sees it, and no read waits on traffic
that came after it.

Completions are keyed by organization and id: another organization's are absent to a caller
(404), and an expired one is gone for every read even before the sweep deletes its row."""

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
from openft.store.journal import Journal, orphans
from openft.store.pages import fetch_page
from openft.store.tables import StoredCompletionRow

log = logging.getLogger("openft.stored_completions")
DAY = 86400
# Records a recovery checks and writes at once: IN lists stay well under SQLite's parameter limit.
RECOVERY_BATCH = 500
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

    id: str  # the "chatcmpl-…" the client saw: the response's
    organization_id: str
    model: str
    metadata: dict[str, str]
    request: dict[str, Any]
    response: dict[str, Any]
    complete: bool
    served_by: str
    created_at: int
    upstream_id: str | None = None  # the id a relayed reply had upstream

    def values(self) -> dict[str, Any]:
        """The row's values, by attribute name."""
        return dict(
            id=self.id,
            organization_id=self.organization_id,
            created_at=self.created_at,
            model=self.model,
            completion_metadata=self.metadata,
            request=self.request,
            response=self.response,
            status="completed" if self.complete else "incomplete",
            search_text=search_text(self.request, self.response),
            served_by=self.served_by,
            upstream_id=self.upstream_id,
        )


class StoredCompletions:
    def __init__(self, settings: Settings, db: Database):
        self.settings = settings
        self.db = db
        self.recorder = Recorder(self)

    def add(self, records: list[Record]) -> None:
        """Writes the records in one transaction (one bulk INSERT: the writer shares the server's
        interpreter, so it should be brief); if that fails, each in its own, so that a record the
        database refuses costs only itself, with its id and the error in the log."""
        try:
            self._insert(records)
        except Exception:
            for record in records:
                try:
                    self._insert([record])
                except Exception:
                    log.exception(
                        "could not store chat completion %s of organization %s; it is lost",
                        record.id,
                        record.organization_id,
                    )

    def recover(self) -> int:
        """Writes the records that servers which stopped before writing them left in their
        journals on this data dir (store/journal.py); returns how many."""
        recovered = 0
        for entries in orphans(self.settings.journal_dir):
            for start in range(0, len(entries), RECOVERY_BATCH):
                records = [Record(**entry) for entry in entries[start : start + RECOVERY_BATCH]]
                missing = self._missing(records)
                self.add(missing)
                recovered += len(missing)
        if recovered:
            log.warning("stored %d chat completions that a server had journaled but not written", recovered)
        return recovered

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

    def _insert(self, records: list[Record]) -> None:
        with self.db.session() as session:
            session.execute(insert(StoredCompletionRow), [record.values() for record in records])

    def _missing(self, records: list[Record]) -> list[Record]:
        """Those of `records` not stored yet: a journal may hold records whose transaction
        committed just before their process died."""
        query = select(StoredCompletionRow.organization_id, StoredCompletionRow.id).where(
            StoredCompletionRow.organization_id.in_({record.organization_id for record in records}),
            StoredCompletionRow.id.in_({record.id for record in records}),
        )
        with self.db.session() as session:
            stored = {(organization_id, completion_id) for organization_id, completion_id in session.execute(query)}
        return [record for record in records if (record.organization_id, record.id) not in stored]

    def _oldest(self, now: float | None = None) -> int:
        """The earliest creation time still kept."""
        return int((time.time() if now is None else now) - self.settings.stored_completions_retention_days * DAY)

    def _visible(self, organization_id: str):
        return select(StoredCompletionRow).where(
            StoredCompletionRow.organization_id == organization_id, StoredCompletionRow.created_at >= self._oldest()
        )


class Recorder:
    """Journals each record at once and writes it to the database on its own thread: `record`
    does not wait for the database. The thread starts with the first record and also sweeps out
    expired completions."""

    def __init__(self, store: StoredCompletions):
        self.store = store
        self._journal = Journal(store.settings.journal_dir)
        self._queue: queue.Queue[tuple[int, Record] | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._closed = False
        self._swept_at = 0.0
        self._written = threading.Condition()
        self._written_ticket = 0

    def record(self, record: Record) -> None:
        """Returns once the record is journaled; raises if it cannot be, since then it could be lost."""
        entry = vars(record)  # serialized at once by the journal: no copy needed
        with self._lock:
            if self._closed:  # a stream dropped during shutdown: written now, never lost
                self.store.add([record])
                return
            self._start()
            # Under the lock with the append: the queue must hold records in ticket order.
            self._queue.put((self._journal.append(entry), record))

    def flush(self) -> None:
        """Returns once every record queued before the call is written, whatever came after."""
        with self._lock:
            ticket = self._journal.last_ticket
        with self._written:
            self._written.wait_for(lambda: self._written_ticket >= ticket)

    def start_sweeping(self) -> None:
        """Expire now and then periodically, whether or not anything is recorded."""
        with self._lock:
            if not self._closed:
                self._start()

    def close(self) -> None:
        """Writes what is queued, stops the thread and lets the journal go."""
        with self._lock:
            self._closed = True
            thread = self._thread
        if thread is not None:
            self._queue.put(None)
            thread.join()
        self._journal.close()

    def _start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._write_forever, name="openft-recorder", daemon=True)
            self._thread.start()

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
            queued = [item for item in batch if item is not None]
            if queued:
                self.store.add([record for _, record in queued])
                self._written_up_to(queued[-1][0])
            if None in batch:
                return

    def _written_up_to(self, ticket: int) -> None:
        with self._written:
            self._written_ticket = ticket
            self._written.notify_all()
        try:
            self._journal.written(ticket)
        except OSError:  # the records are stored; a replay would find them there and skip them
            log.exception("could not mark stored chat completions as written in the journal")

    def _sweep(self) -> None:
        self._swept_at = time.monotonic()
        try:
            if expired := self.store.expire():
                log.info("deleted %d stored chat completions past their retention", expired)
        except Exception:
            log.exception("could not expire stored chat completions")


def stored_object(row: StoredCompletionRow) -> dict[str, Any]:
    """The `chat.completion` as OpenAI lists a stored one: the response, the request's parameters
    and the metadata; openft adds `status` (whether the reply is complete) and `upstream_id` (the
    id a relayed reply had upstream)."""
    shown = {name: row.request.get(name) for name in SHOWN_PARAMETERS}
    return {
        **row.response,
        **shown,
        "input_user": row.request.get("user"),
        "request_id": None,
        "metadata": row.completion_metadata,
        "status": row.status,
        "upstream_id": row.upstream_id,
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
