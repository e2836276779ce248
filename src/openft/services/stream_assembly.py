"""A streamed chat completion put back together: the server-sent events of a stream (openft's own
or an upstream's, in whatever pieces the bytes arrive) read as they pass, and the `chat.completion`
they add up to, for storing. The stream itself is passed on untouched."""

from __future__ import annotations

import json
from typing import Any


class StreamAssembly:
    def __init__(self):
        self._pending = b""
        self._choices: dict[int, dict[str, Any]] = {}
        self.head: dict[str, Any] = {}
        self.usage: dict[str, Any] | None = None
        self.done = False  # `data: [DONE]` seen
        self.error: dict[str, Any] | None = None

    def feed(self, frame: str | bytes) -> None:
        self._pending += frame.encode() if isinstance(frame, str) else frame
        *lines, self._pending = self._pending.split(b"\n")
        for line in lines:
            line = line.strip()
            if line.startswith(b"data:"):
                self._event(line[len(b"data:") :].strip())

    @property
    def complete(self) -> bool:
        """The stream ended as a reply ends: [DONE], no error, and every choice finished."""
        choices = self._choices.values()
        return self.done and self.error is None and bool(choices) and all(c["finish_reason"] for c in choices)

    def completion(self) -> dict[str, Any]:
        """The `chat.completion` the chunks so far add up to (choices unfinished have no finish_reason)."""
        choices = [self._choice(index, self._choices[index]) for index in sorted(self._choices)]
        return {
            "id": self.head.get("id"),
            "object": "chat.completion",
            "created": self.head.get("created"),
            "model": self.head.get("model"),
            "choices": choices,
            "usage": self.usage,
            "system_fingerprint": self.head.get("system_fingerprint"),
        }

    def _event(self, data: bytes) -> None:
        if data == b"[DONE]":
            self.done = True
            return
        try:
            chunk = json.loads(data)
        except ValueError:
            return
        if "error" in chunk:
            self.error = chunk["error"]
            return
        if not self.head:
            self.head = {key: chunk.get(key) for key in ("id", "created", "model", "system_fingerprint")}
        if chunk.get("usage"):
            self.usage = chunk["usage"]
        for piece in chunk.get("choices") or []:
            choice = self._choices.setdefault(
                piece.get("index", 0),
                {
                    "content": [],
                    "reasoning": [],
                    "tool_calls": {},
                    "function_call": None,
                    "finish_reason": None,
                    "logprobs": None,
                },
            )
            delta = piece.get("delta") or {}
            if delta.get("content"):
                choice["content"].append(delta["content"])
            if delta.get("reasoning_content"):
                choice["reasoning"].append(delta["reasoning_content"])
            for call in delta.get("tool_calls") or []:
                _merge_call(choice["tool_calls"].setdefault(call.get("index", 0), {}), call)
            if function_call := delta.get("function_call"):
                choice["function_call"] = _merge_call(choice["function_call"] or {}, {"function": function_call})
            if piece.get("logprobs") and piece["logprobs"].get("content"):
                choice["logprobs"] = choice["logprobs"] or {"content": [], "refusal": None}
                choice["logprobs"]["content"] += piece["logprobs"]["content"]
            if piece.get("finish_reason"):
                choice["finish_reason"] = piece["finish_reason"]

    @staticmethod
    def _choice(index: int, choice: dict[str, Any]) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": "".join(choice["content"]) or None, "refusal": None}
        if choice["tool_calls"]:
            message["tool_calls"] = [choice["tool_calls"][n] for n in sorted(choice["tool_calls"])]
        elif message["content"] is None and not choice["reasoning"]:
            message["content"] = ""
        if choice["reasoning"]:
            message["reasoning_content"] = "".join(choice["reasoning"])
        if choice["function_call"]:
            message["function_call"] = choice["function_call"]["function"]
        return {
            "index": index,
            "message": message,
            "logprobs": choice["logprobs"],
            "finish_reason": choice["finish_reason"],
        }


def _merge_call(into: dict[str, Any], piece: dict[str, Any]) -> dict[str, Any]:
    """A streamed call's pieces: id and type once, the name once, the arguments in parts."""
    for key in ("id", "type"):
        if piece.get(key):
            into[key] = piece[key]
    function = into.setdefault("function", {"name": "", "arguments": ""})
    incoming = piece.get("function") or {}
    if incoming.get("name"):
        function["name"] = incoming["name"]
    function["arguments"] += incoming.get("arguments") or ""
    return into
