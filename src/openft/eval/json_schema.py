"""The schema of a JSON task, for the eval's schema validity and its constrained arm.

When every reference is a JSON object or array, the task's schema is inferred from its JSON
replies (the training file's and the held-out references) by genson: each property's types as
seen, required where every reply has it. Objects are then closed (`additionalProperties:
false`), as a caller holding a model to its format would write them. The constrained arm sends
it as a non-strict `response_format`: held to it as far as the grammar engine supports it.
"""

from __future__ import annotations

import json

import jsonschema_rs
from genson import SchemaBuilder


def inferred_schema(replies: list[str]) -> dict | None:
    """The schema of the replies that are JSON objects or arrays (None if there are none)."""
    builder, seen = SchemaBuilder(), False
    for reply in replies:
        value = json_document(reply)
        if value is not None:
            builder.add_object(value)
            seen = True
    if not seen:
        return None
    schema = builder.to_schema()
    schema.pop("$schema", None)
    return _closed(schema)


def schema_valid(output: str, schema: dict) -> bool:
    value = json_document(output)
    return value is not None and jsonschema_rs.validator_for(schema).is_valid(value)


def json_document(text: str) -> dict | list | None:
    """`text` as a JSON object or array, or None (a bare number or string does not make a JSON task)."""
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, (dict, list)) else None


def _closed(schema: dict) -> dict:
    """`schema` with every object's `additionalProperties` false, nested ones included."""
    closed = dict(schema)
    if "properties" in closed:
        closed["properties"] = {name: _closed(value) for name, value in closed["properties"].items()}
    if isinstance(closed.get("items"), dict):
        closed["items"] = _closed(closed["items"])
    if "anyOf" in closed:
        closed["anyOf"] = [_closed(branch) for branch in closed["anyOf"]]
    if closed.get("type") == "object":
        closed["additionalProperties"] = False
    return closed
