"""Stored completions as training data ("distill"): the request's messages and tools, and the
reply that was stored, as one line of a fine-tuning file.

Supervised (SFT) lines are `{"messages": [...input, reply], "tools"?, "parallel_tool_calls"?}`
in the shape `openft.data.validate` checks: a `developer` message becomes `system`, text parts
become text, and keys a training line may not carry (`refusal`, `annotations`, …) are dropped.

Preference (DPO) lines pair a better reply against the stored one, OpenPipe's "relabel"
pattern: `{"input": {"messages", "tools"?}, "preferred_output": [reply], "non_preferred_output":
[stored reply]}`, OpenAI's DPO format. A better reply comes from a metadata key set afterwards
(`POST /v1/chat/completions/{id}` with `{"metadata": {"preferred": "…"}}`: short replies, as
metadata values hold 512 characters) or from a JSONL file of replacements, one
`{"completion_id": "chatcmpl-…", "preferred": "text" or an assistant message}` a line.

Only a complete reply is ever an answer: a dropped stream is skipped, and so is a reply cut off
by its token limit (`finish_reason: "length"`), which would teach the model to stop mid-way."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from openft.data.chat_format import content_text
from openft.data.validate import ALLOWED_MESSAGE_KEYS

ANSWERED = ("stop", "tool_calls", "function_call")


@dataclass
class Stored:
    """What distilling needs of a stored completion."""

    id: str
    request: dict[str, Any]
    response: dict[str, Any]
    status: str
    metadata: dict[str, str]


class Skipped(ValueError):
    """A stored completion that makes no training line, and why."""


def supervised_line(stored: Stored) -> dict[str, Any]:
    example = {"messages": [*_input_messages(stored), _stored_reply(stored)]}
    return example | _tool_fields(stored.request)


def preference_line(stored: Stored, preferred: dict[str, Any]) -> dict[str, Any]:
    """The stored reply as the worse one, `preferred` (an assistant message) as the better."""
    return {
        "input": {"messages": _input_messages(stored)} | _tool_fields(stored.request),
        "preferred_output": [_training_message(preferred)],
        "non_preferred_output": [_stored_reply(stored)],
    }


def preferred_from_metadata(stored: Stored, key: str) -> dict[str, Any] | None:
    text = stored.metadata.get(key)
    return {"role": "assistant", "content": text} if text else None


def read_replacements(path: Path) -> dict[str, dict[str, Any]]:
    """A replacements file: completion id → the preferred assistant message. Raises ValueError
    naming the line that is not one."""
    replacements = {}
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            preferred = row["preferred"]
            if isinstance(preferred, str):
                preferred = {"role": "assistant", "content": preferred}
            if not isinstance(preferred, dict) or not isinstance(row["completion_id"], str):
                raise TypeError
        except (ValueError, KeyError, TypeError):
            raise ValueError(
                f'{path}, line {number}: expected {{"completion_id": "chatcmpl-…", "preferred": '
                '"text" or an assistant message}'
            ) from None
        replacements[row["completion_id"]] = {**preferred, "role": "assistant"}
    return replacements


def jsonl(lines: Iterable[dict[str, Any]]) -> bytes:
    return b"".join(json.dumps(line, ensure_ascii=False).encode() + b"\n" for line in lines)


def _input_messages(stored: Stored) -> list[dict[str, Any]]:
    return [_training_message(message) for message in stored.request.get("messages", [])]


def _stored_reply(stored: Stored) -> dict[str, Any]:
    if stored.status != "completed":
        raise Skipped("the stream was dropped before the reply was complete")
    choices = stored.response.get("choices") or []
    if not choices:
        raise Skipped("no reply was stored")
    if choices[0].get("finish_reason") not in ANSWERED:
        raise Skipped(f"the reply was cut off (finish_reason {choices[0].get('finish_reason')!r})")
    return _training_message(choices[0]["message"])


def _training_message(message: dict[str, Any]) -> dict[str, Any]:
    kept = {key: value for key, value in message.items() if key in ALLOWED_MESSAGE_KEYS and value is not None}
    if kept.get("role") == "developer":
        kept["role"] = "system"
    if isinstance(kept.get("content"), list):
        kept["content"] = content_text(kept["content"])
    if "tool_calls" in kept:
        kept["tool_calls"] = [
            {"id": call.get("id"), "type": call.get("type", "function"), "function": call["function"]}
            for call in kept["tool_calls"]
        ]
    says_something = "content" in kept or "tool_calls" in kept or "function_call" in kept
    if kept.get("role") == "assistant" and not says_something:
        kept["content"] = ""
    return kept


def _tool_fields(request: dict[str, Any]) -> dict[str, Any]:
    fields = {}
    if request.get("tools"):
        fields["tools"] = request["tools"]
    elif request.get("functions"):
        fields["functions"] = request["functions"]
    if isinstance(request.get("parallel_tool_calls"), bool) and "tools" in fields:
        fields["parallel_tool_calls"] = request["parallel_tool_calls"]
    return fields
