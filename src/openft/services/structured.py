"""Structured outputs: a chat request's `response_format`, strict tools and `tool_choice` turned
into the grammar its reply must match (inference/constraints.py), with OpenAI's rules and
messages for what it refuses.

- `json_object`: any JSON object; a message must say "json" (OpenAI's rule: without being told,
  a model asked for JSON may write whitespace until max_tokens);
- `json_schema`: with `strict: true`, the schema must be in OpenAI's strict subset
  (strict_schema.py), else 400 `invalid_json_schema`; without, it is constrained as far as the
  grammar engine implements it (unknown keywords ignored);
- tools with `function.strict: true` get their arguments held to their parameters' schema
  (400 `invalid_function_parameters` outside the subset) whenever the model writes a call;
  `tool_choice` "required" or a named function forces a call (legacy `function_call` by name
  too), and then every offered function's arguments follow its schema as far as supported.

A schema the grammar engine cannot compile (a `pattern` that is not a regex, a keyword it does
not implement under `strict`) is a 400 of the same kind, with the engine's reason.
"""

from __future__ import annotations

import re

from openft.data.chat_format import content_text
from openft.errors import OpenFTError
from openft.inference.constraints import ANY_OBJECT, Tool, grammar_error, json_grammar, tools_grammar
from openft.protocol.chat import ChatCompletionRequest
from openft.services.strict_schema import strict_schema_error

_SCHEMA_NAME = re.compile(r"^[a-zA-Z0-9_-]+$")
_EMPTY_PARAMETERS = {"type": "object", "properties": {}, "required": [], "additionalProperties": False}


def reply_grammar(request: ChatCompletionRequest) -> str | None:
    """The grammar the reply must match, or None for a free reply; OpenFTError(400) for a request
    OpenAI would refuse."""
    reply = _reply_schema(request)
    tools, forced = _callable_tools(request)
    if tools and (forced or reply is not None or any(tool.strict for tool in tools)):
        # OpenAI's default allows parallel calls; a legacy function_call is one call
        parallel = bool(request.tools) and request.parallel_tool_calls is not False
        return tools_grammar(tools, forced=forced, parallel=parallel, reply_schema=reply)
    if reply is not None:
        return json_grammar(*reply)
    return None


def _reply_schema(request: ChatCompletionRequest) -> tuple[dict, bool] | None:
    """The response_format's (schema, strict), or None for text."""
    response_format = request.response_format
    kind = None if response_format is None else response_format.get("type")
    if kind in (None, "text"):
        return None
    if kind == "json_object":
        if not any("json" in content_text(message.content).lower() for message in request.messages):
            raise OpenFTError(
                400,
                "'messages' must contain the word 'json' in some form, to use 'response_format' of type 'json_object'.",
                param="messages",
            )
        return ANY_OBJECT, True
    if kind != "json_schema":
        raise OpenFTError(
            400,
            f"Invalid value: '{kind}'. Supported values are: 'json_object', 'json_schema', and 'text'.",
            param="response_format.type",
            code="invalid_value",
        )
    spec = response_format.get("json_schema")
    if not isinstance(spec, dict):
        raise _missing("response_format.json_schema")
    name = spec.get("name")
    if not isinstance(name, str) or not name:
        raise _missing("response_format.json_schema.name")
    if not _SCHEMA_NAME.match(name) or len(name) > 64:
        raise OpenFTError(
            400,
            f"Invalid 'response_format.json_schema.name': '{name}'. Expected a name of at most 64 letters, "
            "digits, underscores and dashes.",
            param="response_format.json_schema.name",
            code="invalid_value",
        )
    schema, strict = spec.get("schema"), spec.get("strict") is True
    if schema is None and not strict:
        schema = ANY_OBJECT
    _check_schema(schema, strict, f"response_format '{name}'", "response_format", "invalid_json_schema")
    return schema, strict


def _callable_tools(request: ChatCompletionRequest) -> tuple[list[Tool], bool]:
    """The functions the reply may call (none when it may not), and whether it must call one."""
    if request.tools:
        offered = [(f"tools[{n}].function", tool.get("function")) for n, tool in enumerate(request.tools)]
        choice, param = request.tool_choice, "tool_choice"
    elif request.functions:
        offered = [(f"functions[{n}]", function) for n, function in enumerate(request.functions)]
        choice, param = request.function_call, "function_call"
    else:
        if request.tool_choice == "required" or isinstance(request.tool_choice, dict):
            raise OpenFTError(
                400,
                "Invalid value for 'tool_choice': 'tool_choice' is only allowed when 'tools' are specified.",
                param="tool_choice",
            )
        return [], False
    tools = [_tool(function, at) for at, function in offered]
    if choice in (None, "auto"):
        return tools, False
    if choice == "none":
        return [], False
    if choice == "required" and param == "tool_choice":
        return tools, True
    if isinstance(choice, dict):
        named_by = choice.get("function") if param == "tool_choice" else choice
        name = named_by.get("name") if isinstance(named_by, dict) else None
        named = [tool for tool in tools if tool.name == name]
        if not named:
            raise OpenFTError(
                400,
                f"Invalid value for '{param}': no function named '{name}' was offered.",
                param=param,
                code="invalid_value",
            )
        return named, True
    raise OpenFTError(
        400,
        f"Invalid value for '{param}': {choice!r}. Supported values are 'none', 'auto'"
        + (", 'required'" if param == "tool_choice" else "")
        + " and a named function.",
        param=param,
        code="invalid_value",
    )


def _tool(function, at: str) -> Tool:
    if not isinstance(function, dict):
        raise _missing(at)
    name = function.get("name")
    if not isinstance(name, str) or not name:
        raise _missing(f"{at}.name")
    strict = function.get("strict") is True
    parameters = function.get("parameters")
    if parameters is None:  # a function without parameters takes none
        parameters = _EMPTY_PARAMETERS if strict else ANY_OBJECT
    _check_schema(parameters, strict, f"function '{name}'", f"{at}.parameters", "invalid_function_parameters")
    return Tool(name, parameters, strict)


def _check_schema(schema, strict: bool, what: str, param: str, code: str) -> None:
    """A schema the reply can be held to: in the strict subset (when strict), and compilable."""
    problem = strict_schema_error(schema) if strict else None
    if problem is None and not isinstance(schema, dict):
        problem = "schema must be a JSON Schema object."
    if problem is None:
        problem = grammar_error(json_grammar(schema, strict))
    if problem is not None:
        raise OpenFTError(400, f"Invalid schema for {what}: {problem}", param=param, code=code)


def _missing(param: str) -> OpenFTError:
    return OpenFTError(400, f"Missing required parameter: '{param}'.", param=param, code="missing_required_parameter")
