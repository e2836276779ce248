"""Tool calls in a generated reply, as openft renders them for training (`data/chat_format.py`):

    <tool_call>
    {"name": "get_weather", "arguments": {"city": "Paris"}}
    </tool_call>

one block per call, after any text. A block whose JSON does not parse, or has no name, is left
in the text: the client sees what the model wrote rather than a call it did not make.
"""

import json
import re
import secrets
from dataclasses import dataclass

_BLOCK = re.compile(r"<tool_call>\s*(.*?)\s*</tool_call>", re.DOTALL)


@dataclass(frozen=True)
class ToolCall:
    name: str
    arguments: str  # JSON text, as OpenAI sends it

    def as_tool_call(self) -> dict:
        return {
            "id": f"call_{secrets.token_hex(12)}",
            "type": "function",
            "function": {"name": self.name, "arguments": self.arguments},
        }


def parse_tool_calls(text: str) -> tuple[str | None, list[ToolCall]]:
    """(the text outside the calls, or None when nothing else was said; the calls)."""
    calls, kept, at = [], [], 0
    for block in _BLOCK.finditer(text):
        call = _call(block.group(1))
        if call is None:
            continue
        kept.append(text[at : block.start()])
        at = block.end()
        calls.append(call)
    kept.append(text[at:])
    rest = "".join(kept).strip()
    return (rest or None) if calls else text, calls


def _call(body: str) -> ToolCall | None:
    try:
        value = json.loads(body)
    except ValueError:
        return None
    if not isinstance(value, dict) or not isinstance(value.get("name"), str):
        return None
    arguments = value.get("arguments", {})
    return ToolCall(value["name"], arguments if isinstance(arguments, str) else json.dumps(arguments))
