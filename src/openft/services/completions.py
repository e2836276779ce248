"""`POST /v1/chat/completions` as a whole: answered here (ChatService) or by the upstream, and
recorded when it is to be stored.

Which answers: a model openft serves to the caller (a base, the caller's fine-tune, an alias
set by configuration) is answered here; with an upstream configured every other name goes to
it, the OpenAI names too (without one, they resolve to the default base). A reply is stored
when the request says `store: true`, or under OPENFT_STORE_ALL_COMPLETIONS unless it says false;
only answers are stored (an error, local or upstream, is not), and a stream as it ended: one
the client dropped, or that broke, is kept as "incomplete", never as an answer."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Any

from openft import ids
from openft.protocol.chat import ChatCompletion, ChatCompletionRequest
from openft.services.chat import ChatService
from openft.services.models import ModelService
from openft.services.stored_completions import Record, Recorder
from openft.services.stream_assembly import StreamAssembly
from openft.services.upstream import Upstream
from openft.settings import Settings


class Completions:
    def __init__(
        self, settings: Settings, chat: ChatService, models: ModelService, recorder: Recorder, upstream: Upstream | None
    ):
        self.settings = settings
        self.chat = chat
        self.models = models
        self.recorder = recorder
        self.upstream = upstream

    async def create(
        self, organization_id: str, request: ChatCompletionRequest, body: dict[str, Any]
    ) -> ChatCompletion | dict[str, Any] | AsyncIterator[str | bytes]:
        """The reply: a completion, or the stream's frames (errors before the first frame raise).
        `body` is the request as sent, unknown fields included, for the upstream and the record."""
        upstream = self.upstream if self.upstream and not self.models.serves(organization_id, request.model) else None
        store = request.store if request.store is not None else self.settings.store_all_completions
        created = int(time.time())
        record = _Recording(self.recorder, organization_id, request, body, created, upstream) if store else None
        if request.stream:
            if upstream:
                frames = await upstream.stream(body)
            else:
                frames = await self.chat.prepare_stream(organization_id, request)
            return record.stream(frames) if record else frames
        reply = await upstream.complete(body) if upstream else await self.chat.complete(organization_id, request)
        if record:
            record.done(reply if isinstance(reply, dict) else reply.model_dump(), complete=True)
        return reply


class _Recording:
    def __init__(
        self,
        recorder: Recorder,
        organization_id: str,
        request: ChatCompletionRequest,
        body: dict[str, Any],
        created: int,
        upstream: Upstream | None,
    ):
        self.recorder = recorder
        self.organization_id = organization_id
        self.request = request
        self.body = {key: value for key, value in body.items() if key not in ("store", "metadata")}
        self.created = created
        self.served_by = "upstream" if upstream else "local"

    def done(self, response: dict[str, Any], complete: bool) -> None:
        self.recorder.record(
            Record(
                organization_id=self.organization_id,
                model=self.request.model,
                metadata=self.request.metadata or {},
                request=self.body,
                response=response,
                complete=complete,
                served_by=self.served_by,
                created_at=self.created,
            )
        )

    async def stream(self, frames: AsyncIterator[str | bytes]) -> AsyncIterator[str | bytes]:
        """The frames, passed on; the completion they made is recorded however the stream ends."""
        assembly = StreamAssembly()
        try:
            async with aclosing(frames):
                async for frame in frames:
                    assembly.feed(frame)
                    yield frame
        finally:
            response = assembly.completion()
            response["id"] = response["id"] or ids.completion_id()  # dropped before the first chunk
            response["created"] = response["created"] or self.created
            response["model"] = response["model"] or self.request.model
            self.done(response, complete=assembly.complete)
