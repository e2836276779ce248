"""What the structured-output tests share: schemas as the strict subset wants them, each with a
question the bundled model can answer and a check of the answer beyond validating, and two
strict tools."""


def obj(properties: dict, **extra) -> dict:
    """An object as the strict subset wants it: every property required, nothing else allowed."""
    return {
        "type": "object",
        "properties": properties,
        "required": list(properties),
        "additionalProperties": False,
        **extra,
    }


STRING, INTEGER, NUMBER, NULL = {"type": "string"}, {"type": "integer"}, {"type": "number"}, {"type": "null"}
POINT = obj({"x": INTEGER, "y": INTEGER})

# (schema, the question, a check of what the answer says beyond validating)
CASES = {
    "nested": (
        obj({"person": obj({"name": STRING, "address": obj({"city": STRING, "country": STRING})})}),
        "Who was Marie Curie? Give her name and where she lived.",
        lambda value: isinstance(value["person"]["address"]["city"], str),
    ),
    "min_items": (
        obj({"steps": {"type": "array", "items": STRING, "minItems": 3}}),
        "List the steps to make tea.",
        lambda value: len(value["steps"]) >= 3,
    ),
    "enum": (
        obj({"sentiment": {"type": "string", "enum": ["positive", "negative", "neutral"]}, "confidence": NUMBER}),
        "Classify the sentiment of: 'I love this movie!'",
        lambda value: value["sentiment"] in ("positive", "negative", "neutral"),
    ),
    "numbers": (
        obj({"celsius": NUMBER, "year": {"type": "integer", "minimum": 1900, "maximum": 2100}}),
        "What is the boiling point of water, and what year is it?",
        lambda value: isinstance(value["year"], int) and 1900 <= value["year"] <= 2100,
    ),
    "nullable": (
        obj({"name": STRING, "nickname": {"type": ["string", "null"]}, "middle": {"anyOf": [STRING, NULL]}}),
        "Describe John Smith.",
        lambda value: {"name", "nickname", "middle"} == set(value),
    ),
    "defs": (
        obj({"start": {"$ref": "#/$defs/point"}, "end": {"$ref": "#/$defs/point"}}, **{"$defs": {"point": POINT}}),
        "Give a line from (0,0) to (3,4).",
        lambda value: set(value["end"]) == {"x", "y"},
    ),
}
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city.",
        "strict": True,
        "parameters": obj({"city": STRING, "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}}),
    },
}
TIME = {
    "type": "function",
    "function": {"name": "get_time", "strict": True, "parameters": obj({"timezone": STRING})},
}


def response_format(name: str, schema: dict, strict: bool = True) -> dict:
    return {"type": "json_schema", "json_schema": {"name": name, "schema": schema, "strict": strict}}
