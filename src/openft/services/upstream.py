"""The upstream: an OpenAI-compatible server (OpenAI, vLLM, another openft) that answers the chat
models openft does not serve, for the requests services/relay.py lets through
(OPENFT_UPSTREAM_BASE_URL; the key is the server's or the organization's own).

Requests go on as the client sent them, less `store` and `metadata` (openft keeps the record;
the upstream need not), with the upstream key in place of the client's. The client gets the
upstream's reply or error in OpenAI's shape, except where that would reveal the key: a 401/403
from the upstream means the key was refused, which is the operator's to fix and no business of
the client (a 502 that says so), and the key's text is struck from anything passed on. An
upstream that cannot be reached is a 502 too.

A stream is never passed on as the upstream's bytes: they may be compressed (by the upstream or a
proxy), and a key in them could not be struck. httpx decodes the content encoding as it reads
lines; each server-sent event's data is then scrubbed and sent in a frame of openft's own."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx

from openft.errors import OpenFTError

# The reply to a long generation may be minutes away; a server that does not answer a connection
# attempt within seconds is down.
TIMEOUT = httpx.Timeout(600.0, connect=10.0)
REDACTED = "[upstream key]"


@dataclass(frozen=True)
class UpstreamKey:
    """The key a request is relayed with."""

    secret: str | None
    # The organization whose own key it is; None for the server's (OPENFT_UPSTREAM_API_KEY).
    organization: str | None = None


class UpstreamError(OpenFTError):
    """An error the upstream answered, passed on with its own body."""

    def __init__(self, status: int, body: dict[str, Any]):
        super().__init__(status, body["error"].get("message") or "")
        self._body = body

    def body(self) -> dict:
        return self._body


class Upstream:
    def __init__(self, base_url: str):
        self.base_url = base_url.rstrip("/")
        self._http = httpx.AsyncClient(base_url=self.base_url, timeout=TIMEOUT)

    @property
    def shown_url(self) -> str:
        return shown_url(self.base_url)

    async def complete(self, body: dict[str, Any], key: UpstreamKey) -> dict[str, Any]:
        try:
            response = await self._http.post("/chat/completions", json=_forwarded(body), headers=_auth(key))
        except httpx.HTTPError as error:
            raise self._unreachable(error) from error
        if response.status_code >= 400:
            raise self._error(response.status_code, response.text, key)
        return json.loads(_scrub(response.text, key))

    async def stream(self, body: dict[str, Any], key: UpstreamKey) -> AsyncIterator[str]:
        """Opens the stream now (so its errors get a status), then returns openft's frames of its
        events as they come."""
        request = self._http.build_request("POST", "/chat/completions", json=_forwarded(body), headers=_auth(key))
        try:
            response = await self._http.send(request, stream=True)
        except httpx.HTTPError as error:
            raise self._unreachable(error) from error
        if response.status_code >= 400:
            try:
                await response.aread()
            finally:
                await response.aclose()
            raise self._error(response.status_code, response.text, key)
        return self._relay(response, key)

    async def _relay(self, response: httpx.Response, key: UpstreamKey) -> AsyncIterator[str]:
        try:
            async for data in event_data(response.aiter_lines()):
                yield sse_frame(_scrub(data, key))
        except httpx.HTTPError as error:  # headers are sent: the error goes in the stream, as OpenAI does
            yield sse_frame(json.dumps(self._unreachable(error).body()))
        finally:
            await response.aclose()

    async def close(self) -> None:
        await self._http.aclose()

    def _unreachable(self, error: httpx.HTTPError) -> OpenFTError:
        return OpenFTError(
            502,
            f"The upstream server at {self.shown_url} could not be reached ({type(error).__name__}). Try again later.",
            type="upstream_error",
            code="upstream_unavailable",
        )

    def _error(self, status: int, text: str, key: UpstreamKey) -> OpenFTError:
        if status in (401, 403):
            fix = (
                f"organization {key.organization}'s own upstream key needs replacing "
                f"(`openft orgs upstream {key.organization} --key-stdin`)"
                if key.organization
                else "the server's OPENFT_UPSTREAM_API_KEY needs fixing"
            )
            return OpenFTError(
                502,
                f"The upstream server at {self.shown_url} refused the key openft sent ({status}); {fix}.",
                type="upstream_error",
                code="upstream_auth_failed",
            )
        try:
            body = json.loads(_scrub(text, key))
        except ValueError:
            body = None
        if isinstance(body, dict) and isinstance(body.get("error"), dict):
            return UpstreamError(status, body)
        return OpenFTError(
            status if status < 500 else 502,
            f"The upstream server answered {status}: {_scrub(text, key)[:200]}",
            type="upstream_error",
            code="upstream_error",
        )


async def event_data(lines: AsyncIterator[str]) -> AsyncIterator[str]:
    """The data of each server-sent event in `lines` (decoded, without line ends), as the SSE spec
    reads it: `data:` lines joined by newlines, dispatched by a blank line; comments and other
    fields (`event:`, `id:`, `retry:`) are not part of a chat completion stream and are dropped."""
    data: list[str] = []
    async for line in lines:
        if not line:
            if data:
                yield "\n".join(data)
            data = []
        elif line.startswith("data:"):
            value = line[len("data:") :]
            data.append(value[1:] if value.startswith(" ") else value)
    if data:  # an upstream that ends without the last blank line still sent its event
        yield "\n".join(data)


def sse_frame(data: str) -> str:
    """One server-sent event: each line of `data` on a `data:` line of its own."""
    return "".join(f"data: {line}\n" for line in data.split("\n")) + "\n"


def shown_url(base_url: str) -> str:
    """The base URL without any user or password in it, for messages and logs."""
    parts = urlsplit(base_url)
    return urlunsplit(parts._replace(netloc=(parts.hostname or "") + (f":{parts.port}" if parts.port else "")))


def _auth(key: UpstreamKey) -> dict[str, str]:
    return {"Authorization": f"Bearer {key.secret}"} if key.secret else {}


def _scrub(text: str, key: UpstreamKey) -> str:
    return text.replace(key.secret, REDACTED) if key.secret else text


def _forwarded(body: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in body.items() if key not in ("store", "metadata")}
