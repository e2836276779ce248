"""OpenAI's strict subset of JSON Schema: what `strict: true` accepts (structured outputs guide,
"Supported schemas"), checked before anything is compiled so an unsupported schema gets the
400 OpenAI gives, never a constraint that silently drops a keyword.

- the root is an object (not `anyOf`);
- every object has `additionalProperties: false` and lists every property in `required`
  (an optional field is a nullable one: `"type": ["string", "null"]`);
- keywords: `type` (string, number, integer, boolean, object, array, null), `enum`, `const`,
  `anyOf`, `$ref` / `$defs` / `definitions` (recursion included), and the annotations
  `title`, `description`, `default`, `examples`, `$comment`; strings `pattern` and `format`
  (date-time, time, date, duration, email, hostname, ipv4, ipv6, uuid); numbers `multipleOf`,
  `minimum`, `maximum`, `exclusiveMinimum`, `exclusiveMaximum`; arrays `items`, `minItems`,
  `maxItems`. Anything else (`allOf`, `not`, `oneOf`, `if`/`then`/`else`,
  `patternProperties`, ...) is not permitted;
- limits: 5,000 object properties in all, 10 levels of nesting, 1,000 enum values, 15,000
  characters in one enum of more than 250 strings, 120,000 characters of property names and
  enum/const values.

`strict_schema_error` returns OpenAI's message for the first violation, its context path
written as OpenAI writes it: `In context=('properties', 'x'), ...`.
"""

from __future__ import annotations

import json

TYPES = {"string", "number", "integer", "boolean", "object", "array", "null"}
FORMATS = {"date-time", "time", "date", "duration", "email", "hostname", "ipv4", "ipv6", "uuid"}
ANY_SCHEMA = {"type", "enum", "const", "anyOf", "$ref", "$defs", "definitions"}
ANNOTATIONS = {"title", "description", "default", "examples", "$comment"}
BY_TYPE = {
    "string": {"pattern", "format"},
    "number": {"multipleOf", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"},
    "integer": {"multipleOf", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"},
    "array": {"items", "minItems", "maxItems"},
    "object": {"properties", "required", "additionalProperties"},
}
KEYWORDS = ANY_SCHEMA | ANNOTATIONS | set().union(*BY_TYPE.values())
MAX_PROPERTIES = 5000
MAX_DEPTH = 10
MAX_ENUM_VALUES = 1000
MAX_LONG_ENUM_CHARS = 15_000  # for one enum of more than 250 string values
LONG_ENUM = 250
MAX_TEXT_CHARS = 120_000


class _Violation(Exception):
    def __init__(self, context: tuple, message: str):
        super().__init__(message)
        self.context, self.message = context, message


def strict_schema_error(schema) -> str | None:
    """Why `schema` falls outside the strict subset (OpenAI's message, without the "Invalid schema
    for ..." prefix the caller adds), or None when it is inside."""
    checker = _Checker()
    try:
        if not isinstance(schema, dict) or schema.get("type") != "object" or "anyOf" in schema:
            got = schema.get("type") if isinstance(schema, dict) else None
            got = f"'type: {json.dumps(got)}'"
            raise _Violation(None, f"schema must be a JSON Schema of 'type: \"object\"', got {got}.")
        checker.schema(schema, (), depth=1)
        checker.totals()
    except _Violation as violation:
        if violation.context is None:
            return violation.message
        return f"In context={violation.context!r}, {violation.message}"
    return None


class _Checker:
    def __init__(self):
        self.properties = 0
        self.text_chars = 0

    def schema(self, schema, context: tuple, depth: int) -> None:
        if not isinstance(schema, dict):
            raise _Violation(context, "schema must be a JSON Schema object.")
        if depth > MAX_DEPTH:
            raise _Violation(context, f"the schema is nested more than {MAX_DEPTH} levels deep.")
        for key in schema:
            if key not in KEYWORDS and not (key == "$schema" and context == ()):
                raise _Violation(context, f"'{key}' is not permitted.")
        types = schema.get("type")
        kinds = types if isinstance(types, list) else [types] if types is not None else []
        for kind in kinds:
            if kind not in TYPES:
                raise _Violation(context, f"{json.dumps(kind)} is not a valid type.")
        if not kinds and not any(key in schema for key in ("anyOf", "$ref", "enum", "const")):
            raise _Violation(context, "schema must have a 'type' key.")
        allowed = ANY_SCHEMA | ANNOTATIONS
        for kind in kinds:
            allowed |= BY_TYPE.get(kind, set())
        for key in schema.keys() - allowed - {"$schema"}:
            raise _Violation(context, f"'{key}' is not permitted for type {json.dumps(types)}.")
        if "format" in schema and schema["format"] not in FORMATS:
            raise _Violation(context, f"format {json.dumps(schema['format'])} is not permitted.")
        self._values(schema, context)
        if "object" in kinds:
            self._object(schema, context, depth)
        if "items" in schema:
            self.schema(schema["items"], (*context, "items"), depth + 1)
        if "anyOf" in schema:
            branches = schema["anyOf"]
            if not isinstance(branches, list) or not branches:
                raise _Violation(context, "'anyOf' must be a non-empty array of schemas.")
            for index, branch in enumerate(branches):
                self.schema(branch, (*context, "anyOf", index), depth)
        if "$ref" in schema:
            ref = schema["$ref"]
            if not isinstance(ref, str) or not (ref == "#" or ref.startswith(("#/$defs/", "#/definitions/"))):
                raise _Violation(context, f"reference {json.dumps(ref)} must point into '$defs' or be '#'.")
        for key in ("$defs", "definitions"):
            definitions = schema.get(key, {})
            if not isinstance(definitions, dict):
                raise _Violation(context, f"'{key}' must be an object of schemas.")
            for name, definition in definitions.items():
                self.schema(definition, (*context, key, name), depth)

    def _object(self, schema: dict, context: tuple, depth: int) -> None:
        if schema.get("additionalProperties") is not False:
            raise _Violation(context, "'additionalProperties' is required to be supplied and to be false.")
        properties = schema.get("properties", {})
        if not isinstance(properties, dict):
            raise _Violation(context, "'properties' must be an object.")
        required = schema.get("required", [])
        missing = [name for name in properties if not isinstance(required, list) or name not in required]
        if missing:
            raise _Violation(
                context,
                "'required' is required to be supplied and to be an array including every key in properties. "
                f"Missing '{missing[0]}'.",
            )
        extra = [name for name in required if name not in properties]
        if extra:
            raise _Violation(context, f"'required' names '{extra[0]}', which is not in properties.")
        self.properties += len(properties)
        for name, value in properties.items():
            self.text_chars += len(name)
            self.schema(value, (*context, "properties", name), depth + 1)

    def _values(self, schema: dict, context: tuple) -> None:
        if "enum" in schema:
            values = schema["enum"]
            if not isinstance(values, list) or not values:
                raise _Violation(context, "'enum' must be a non-empty array.")
            if len(values) > MAX_ENUM_VALUES:
                raise _Violation(context, f"'enum' has {len(values)} values; at most {MAX_ENUM_VALUES} are allowed.")
            strings = [value for value in values if isinstance(value, str)]
            chars = sum(map(len, strings))
            if len(strings) > LONG_ENUM and chars > MAX_LONG_ENUM_CHARS:
                raise _Violation(
                    context,
                    f"an enum of more than {LONG_ENUM} string values may total {MAX_LONG_ENUM_CHARS} characters; "
                    f"this one has {chars}.",
                )
            self.text_chars += chars
        if isinstance(schema.get("const"), str):
            self.text_chars += len(schema["const"])

    def totals(self) -> None:
        if self.properties > MAX_PROPERTIES:
            raise _Violation(
                None, f"The schema has {self.properties} object properties; at most {MAX_PROPERTIES} are allowed."
            )
        if self.text_chars > MAX_TEXT_CHARS:
            raise _Violation(
                None,
                f"The schema's property names and enum/const values total {self.text_chars} characters; at most "
                f"{MAX_TEXT_CHARS} are allowed.",
            )
