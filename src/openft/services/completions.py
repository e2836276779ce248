"""`POST /v1/chat/completions` as a whole: answered here (ChatService) or by the upstream, and
recorded when it is to be stored.

Which answers: a model openft serves to the caller (a base, the caller's fine-tune, an alias
set by configuration) is answered here; the upstream answers only what services/relay.py lets
through, and everything else is answered as if there were no upstream. A reply is stored when
the request says `store: true`, or under OPENFT_STORE_ALL_COMPLETIONS unless it says false;
only answers are stored (an error, local or upstream, is not), and a stream as it ended: one
the client dropped, or that broke, is kept as "incomplete", never as an answer.

A stored reply is recorded before the client has all of it (a whole reply before it is
returned, a stream before its `[DONE]`), and the recorder journals it at once
(services/stored_completions.py): a reply the client received whole is never lost. A relayed
reply that is stored reaches the client under an id openft minted, the one the stored
completion is retrieved by; the upstream's own id is kept beside it (`upstream_id`)."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Any

from openft import ids
from openft.protocol.chat import ChatCompletion, ChatCompletionRequest
from openft.services.chat import ChatService
from openft.services.relay import RelayPolicy
from openft.services.stored_completions import Record, Recorder
from openft.services.stream_assembly import StreamAssembly
from openft.services.upstream import Upstream, sse_frame
from openft.settings import Settings


class Completions:
    def __init__(
        self, settings: Settings, chat: ChatService, relay: RelayPolicy, recorder: Recorder, upstream: Upstream | None
    ):
        self.settings = settings
        self.chat = chat
        self.relay = relay
        self.recorder = recorder
        self.upstream = upstream

    async def create(
        self, organization_id: str, request: ChatCompletionRequest, body: dict[str, Any]
    ) -> ChatCompletion | dict[str, Any] | AsyncIterator[str]:
        """The reply: a completion, or the stream's frames (errors before the first frame raise).
        `body` is the request as sent, unknown fields included, for the upstream and the record."""
        key = self.relay.key_for(organization_id, request.model) if self.upstream else None
        store = request.store if request.store is not None else self.settings.store_all_completions
        created = int(time.time())
        record = _Recording(self.recorder, organization_id, request, body, created, key is not None) if store else None
        if request.stream:
            if key:
                frames = await self.upstream.stream(body, key)
            else:
                frames = await self.chat.prepare_stream(organization_id, request)
            return record.stream(frames) if record else frames
        if key:
            reply = await self.upstream.complete(body, key)
        else:
            reply = await self.chat.complete(organization_id, request)
        if record:
            record.whole(reply if isinstance(reply, dict) else reply.model_dump())
        return reply


class _Recording:
    def __init__(
        self,
        recorder: Recorder,
        organization_id: str,
        request: ChatCompletionRequest,
        body: dict[str, Any],
        created: int,
        relayed: bool,
    ):
        self.recorder = recorder
        self.organization_id = organization_id
        self.request = request
        self.body = {key: value for key, value in body.items() if key not in ("store", "metadata")}
        self.created = created
        self.relayed = relayed
        # An upstream's ids need not be unique (it may repeat them, or be replaced by another),
        # so a relayed reply is stored, and shown, under one of openft's; a local one has one already.
        self.id = ids.completion_id() if relayed else None

    def whole(self, reply: dict[str, Any]) -> None:
        """Records a whole reply; a relayed one is given openft's id, in place."""
        upstream_id = reply.get("id")
        if self.relayed:
            reply["id"] = self.id
        self._record(reply, complete=True, upstream_id=upstream_id)

    async def stream(self, frames: AsyncIterator[str]) -> AsyncIterator[str]:
        """The frames, passed on (a relayed stream's under openft's id); the completion they make
        is recorded before the `[DONE]` frame goes out, or however else the stream ends."""
        assembly = StreamAssembly()
        recorded = False
        try:
            async with aclosing(frames):
                async for frame in frames:
                    assembly.feed(frame)
                    if assembly.done and not recorded:
                        recorded = True
                        self._record_stream(assembly)
                    yield self._shown(frame) if self.relayed else frame
        finally:
            if not recorded:
                self._record_stream(assembly)

    def _record_stream(self, assembly: StreamAssembly) -> None:
        response = assembly.completion()
        upstream_id = response["id"]
        response["id"] = self.id or response["id"] or ids.completion_id()  # dropped before the first chunk
        response["created"] = response["created"] or self.created
        response["model"] = response["model"] or self.request.model
        self._record(response, complete=assembly.complete, upstream_id=upstream_id)

    def _record(self, response: dict[str, Any], complete: bool, upstream_id: str | None) -> None:
        self.recorder.record(
            Record(
                id=response["id"],
                organization_id=self.organization_id,
                model=self.request.model,
                metadata=self.request.metadata or {},
                request=self.body,
                response=response,
                complete=complete,
                served_by="upstream" if self.relayed else "local",
                created_at=self.created,
                upstream_id=upstream_id if self.relayed else None,
            )
        )

    def _shown(self, frame: str) -> str:
        """A relayed chunk under openft's id (the upstream's frames are openft's own, upstream.py)."""
        data = "\n".join(line[len("data: ") :] for line in frame.split("\n") if line.startswith("data: "))
        try:
            chunk = json.loads(data)
        except ValueError:  # [DONE]
            return frame
        if not isinstance(chunk, dict) or "id" not in chunk:  # an error
            return frame
        chunk["id"] = self.id
        return sse_frame(json.dumps(chunk))
