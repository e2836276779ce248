"""The upstream: an OpenAI-compatible server (OpenAI, vLLM, another openft) that answers the chat
models openft does not serve (OPENFT_UPSTREAM_BASE_URL, OPENFT_UPSTREAM_API_KEY).

Requests go on as the client sent them, less `store` and `metadata` (openft keeps the record;
the upstream need not), with openft's upstream key in place of the client's. The client gets
the upstream's reply or error as it came, in OpenAI's shape, except where that would reveal the
upstream key: a 401/403 from the upstream means openft's own key was refused, which is the
server's fault and no business of the client (a 502 that says so), and the key's text is struck
from anything passed on. An upstream that cannot be reached is a 502 too."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx

from openft.errors import OpenFTError

# The reply to a long generation may be minutes away; a server that does not answer a connection
# attempt within seconds is down.
TIMEOUT = httpx.Timeout(600.0, connect=10.0)
REDACTED = "[upstream key]"


class UpstreamError(OpenFTError):
    """An error the upstream answered, passed on with its own body."""

    def __init__(self, status: int, body: dict[str, Any]):
        super().__init__(status, body["error"].get("message") or "")
        self._body = body

    def body(self) -> dict:
        return self._body


class Upstream:
    def __init__(self, base_url: str, api_key: str | None):
        self.base_url = base_url.rstrip("/")
        self._key = api_key or ""
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = httpx.AsyncClient(base_url=self.base_url, headers=headers, timeout=TIMEOUT)

    @property
    def shown_url(self) -> str:
        return shown_url(self.base_url)

    async def complete(self, body: dict[str, Any]) -> dict[str, Any]:
        try:
            response = await self._http.post("/chat/completions", json=_forwarded(body))
        except httpx.HTTPError as error:
            raise self._unreachable(error) from error
        if response.status_code >= 400:
            raise self._error(response.status_code, response.content)
        return json.loads(self._scrub(response.content))

    async def stream(self, body: dict[str, Any]) -> AsyncIterator[bytes]:
        """Opens the stream now (so its errors get a status), then returns its bytes as they come."""
        request = self._http.build_request("POST", "/chat/completions", json=_forwarded(body))
        try:
            response = await self._http.send(request, stream=True)
        except httpx.HTTPError as error:
            raise self._unreachable(error) from error
        if response.status_code >= 400:
            try:
                content = await response.aread()
            finally:
                await response.aclose()
            raise self._error(response.status_code, content)
        return self._relay(response)

    async def _relay(self, response: httpx.Response) -> AsyncIterator[bytes]:
        try:
            async for piece in response.aiter_raw():
                yield self._scrub(piece)
        except httpx.HTTPError as error:  # headers are sent: the error goes in the stream, as OpenAI does
            yield f"data: {json.dumps(self._unreachable(error).body())}\n\n".encode()
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

    def _error(self, status: int, content: bytes) -> OpenFTError:
        if status in (401, 403):
            return OpenFTError(
                502,
                f"The upstream server at {self.shown_url} refused openft's key ({status}); "
                "the server's OPENFT_UPSTREAM_API_KEY needs fixing.",
                type="upstream_error",
                code="upstream_auth_failed",
            )
        try:
            body = json.loads(self._scrub(content))
        except ValueError:
            body = None
        if isinstance(body, dict) and isinstance(body.get("error"), dict):
            return UpstreamError(status, body)
        text = self._scrub(content).decode(errors="replace")[:200]
        return OpenFTError(
            status if status < 500 else 502,
            f"The upstream server answered {status}: {text}",
            type="upstream_error",
            code="upstream_error",
        )

    def _scrub(self, content: bytes) -> bytes:
        return content.replace(self._key.encode(), REDACTED.encode()) if self._key else content


def shown_url(base_url: str) -> str:
    """The base URL without any user or password in it, for messages and logs."""
    parts = urlsplit(base_url)
    return urlunsplit(parts._replace(netloc=(parts.hostname or "") + (f":{parts.port}" if parts.port else "")))


def _forwarded(body: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in body.items() if key not in ("store", "metadata")}
