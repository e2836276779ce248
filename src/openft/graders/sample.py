"""The `sample` namespace: what a model answered, as graders see it (GRADERS-GUIDE, "Sample
namespace"): `output_text`, `output_json`, `output_tools`, `choices`."""

from __future__ import annotations

import json
from typing import Any


def make_sample(
    output_text: str,
    *,
    tool_calls: list[dict[str, Any]] | None = None,
    parse_json: bool = True,
    finish_reason: str = "stop",
) -> dict[str, Any]:
    """The sample of one chat reply. `output_json` is the text parsed when it is JSON and
    `parse_json` is set (the run endpoint always; RFT and eval runs when the request asked for a
    JSON response format), else None; `choices` is the chat reply's one choice."""
    output_json = None
    if parse_json:
        try:
            output_json = json.loads(output_text)
        except ValueError:
            pass
    message = {"role": "assistant", "content": output_text, **({"tool_calls": tool_calls} if tool_calls else {})}
    return {
        "output_text": output_text,
        "output_json": output_json,
        "output_tools": list(tool_calls or []),
        "choices": [{"index": 0, "message": message, "finish_reason": finish_reason}],
    }
