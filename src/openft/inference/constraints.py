"""What a reply must match, written as a grammar: llguidance's Lark dialect, where `%json {...}`
stands for "a JSON value valid against this schema". The engines compile the text for their
tokenizer (grammar.py); vLLM's guidance backend takes the same text. Torch-free (llguidance
needs nothing else): the server builds and checks a request's grammar before any engine sees it.

JSON is written as `json.dumps` writes it (", " and ": ", no other whitespace): as openft
renders tool calls for training (data/chat_format.py), and with no room for the runs of
whitespace a model can fall into where JSON allows free whitespace.

Tool calls are openft's blocks, `<tool_call>\\n{"name": ..., "arguments": {...}}\\n</tool_call>`
(inference/tool_calls.py parses them back), one per call, separated by a newline:

- forced (`tool_choice` "required" or a named function): the reply is calls only;
- offered (`auto`) with strict tools: free text, where writing `<tool_call>` starts a call that
  must then be complete and valid (llguidance's lazy trigger: the first "<tool_call>" commits);
- with a `response_format` too: either the JSON reply or calls.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass

import llguidance

JSON_STYLE = {"whitespace_flexible": False, "item_separator": ", ", "key_separator": ": "}
ANY_OBJECT = {"type": "object"}
CALL_TAIL = "}\n</tool_call>"


@dataclass(frozen=True)
class Tool:
    """A function a reply may call: its arguments' schema, and whether it is held to it
    exactly (`strict`) or as far as the grammar engine supports the schema."""

    name: str
    parameters: dict
    strict: bool


def json_value(schema: dict, strict: bool) -> str:
    """A JSON value valid against `schema`. A schema that is not strict is `lenient`: keywords
    llguidance does not implement are ignored rather than refused."""
    options = {**JSON_STYLE, "lenient": not strict}
    return "%json " + json.dumps({**schema, "x-guidance": options}, ensure_ascii=False)


def json_grammar(schema: dict, strict: bool) -> str:
    return f"start: {json_value(schema, strict)}\n"


def tools_grammar(tools: list[Tool], *, forced: bool, parallel: bool, reply_schema: tuple[dict, bool] | None) -> str:
    """The replies that call `tools` (see the module docstring). `reply_schema`, the
    response_format's (schema, strict), is the alternative to calling when not forced."""
    named = " | ".join(
        f"{_literal(_call_head(tool.name))} {json_value(tool.parameters, tool.strict)}" for tool in tools
    )
    rules = f'body: "\\n" ({named}) {_literal(CALL_TAIL)}\n'
    repeat = ' ("\\n" call)*' if parallel else ""
    if forced:
        return f'start: call{repeat}\ncall: "<tool_call>" body\n{rules}'
    if reply_schema is not None:
        schema, strict = reply_schema
        return f'start: {json_value(schema, strict)} | call{repeat}\ncall: "<tool_call>" body\n{rules}'
    # Text, or text then calls: the lazy trigger ends the text at the first "<tool_call>", and
    # commits to a call.
    calls = "(trigger body)+" if parallel else "trigger body"
    return (
        f'start: TEXT | {calls}\ntrigger[lazy]: TEXT_BEFORE "<tool_call>"\n{rules}'
        "TEXT_BEFORE: /(.|\\n)*/\nTEXT: /(.|\\n)+/\n"
    )


@functools.lru_cache(maxsize=256)
def grammar_error(grammar: str) -> str | None:
    """Why llguidance cannot compile `grammar` (a keyword it does not implement, a pattern that is
    not a regex, ...), or None. Checked without a tokenizer: the server has none loaded."""
    return llguidance.LLMatcher.validate_grammar(llguidance.LLMatcher.grammar_from_lark(grammar)) or None


def _call_head(name: str) -> str:
    """What a call's JSON says before its arguments."""
    return '{"name": ' + json.dumps(name, ensure_ascii=False) + ', "arguments": '


def _literal(text: str) -> str:
    """`text` as a Lark string literal."""
    return json.dumps(text)
