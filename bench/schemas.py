"""Realistic response schemas for the structured-output benches: what callers send OpenAI with
`strict: true` (every property required, `additionalProperties: false`, optional fields as
nullable), from flat extraction records to nested, recursive and `$defs` ones."""


def _object(properties: dict, **extra) -> dict:
    return {
        "type": "object",
        "properties": properties,
        "required": list(properties),
        "additionalProperties": False,
        **extra,
    }


_STRING = {"type": "string"}
_INTEGER = {"type": "integer"}
_NUMBER = {"type": "number"}
_BOOLEAN = {"type": "boolean"}


def _array(items: dict, **extra) -> dict:
    return {"type": "array", "items": items, **extra}


def _nullable(kind: str) -> dict:
    return {"type": [kind, "null"]}


SCHEMAS: dict[str, dict] = {
    "sentiment": _object(
        {"sentiment": {"type": "string", "enum": ["positive", "neutral", "negative"]}, "confidence": _NUMBER}
    ),
    "person": _object({"name": _STRING, "age": _INTEGER, "email": _nullable("string")}),
    "yes_no": _object({"answer": _BOOLEAN, "reason": _STRING}),
    "keywords": _object({"keywords": _array(_STRING, minItems=3, maxItems=8)}),
    "address_book": _object(
        {"contacts": _array({"$ref": "#/$defs/contact"}, minItems=1)},
        **{
            "$defs": {
                "address": _object({"street": _STRING, "city": _STRING, "zip": _nullable("string")}),
                "contact": _object(
                    {"name": _STRING, "phone": _nullable("string"), "address": {"$ref": "#/$defs/address"}}
                ),
            }
        },
    ),
    "invoice": _object(
        {
            "invoice_number": _STRING,
            "currency": {"type": "string", "enum": ["USD", "EUR", "GBP", "JPY"]},
            "issued": {"type": "string", "format": "date"},
            "lines": _array(_object({"description": _STRING, "quantity": _INTEGER, "unit_price": _NUMBER}), minItems=1),
            "total": _NUMBER,
            "paid": _BOOLEAN,
        }
    ),
    "calendar_event": _object(
        {
            "title": _STRING,
            "start": {"type": "string", "format": "date-time"},
            "end": {"type": "string", "format": "date-time"},
            "attendees": _array(_object({"name": _STRING, "email": {"type": "string", "format": "email"}})),
            "location": _nullable("string"),
        }
    ),
    "math_reasoning": _object(
        {"steps": _array(_object({"explanation": _STRING, "output": _STRING})), "final_answer": _STRING}
    ),
    "entities": _object(
        {
            "entities": _array(
                _object(
                    {
                        "text": _STRING,
                        "label": {"type": "string", "enum": ["PERSON", "ORG", "LOCATION", "DATE", "PRODUCT", "EVENT"]},
                        "start": _INTEGER,
                        "end": _INTEGER,
                    }
                )
            )
        }
    ),
    "support_ticket": _object(
        {
            "category": {"type": "string", "enum": ["billing", "technical", "account", "shipping", "other"]},
            "priority": {"type": "string", "enum": ["low", "medium", "high", "urgent"]},
            "summary": _STRING,
            "order_id": _nullable("string"),
            "needs_human": _BOOLEAN,
            "tags": _array(_STRING, maxItems=5),
        }
    ),
    "ui_component": _object(
        {
            "type": {"type": "string", "enum": ["div", "button", "header", "section", "field", "form"]},
            "label": _STRING,
            "children": _array({"$ref": "#"}),
            "attributes": _array(_object({"name": _STRING, "value": _STRING})),
        }
    ),
    "product": _object(
        {
            "sku": {"type": "string", "pattern": "^[A-Z]{3}-[0-9]{4}$"},
            "name": _STRING,
            "price": {"type": "number", "minimum": 0},
            "stock": {"type": "integer", "minimum": 0, "maximum": 100000},
            "dimensions": _object(
                {
                    "width": _NUMBER,
                    "height": _NUMBER,
                    "depth": _NUMBER,
                    "unit": {"type": "string", "enum": ["cm", "in"]},
                }
            ),
            "variants": _array(_object({"color": _STRING, "size": _nullable("string"), "available": _BOOLEAN})),
        }
    ),
    "search_query": _object(
        {
            "query": _STRING,
            "filters": _object(
                {
                    "date_from": _nullable("string"),
                    "date_to": _nullable("string"),
                    "sources": _array({"type": "string", "enum": ["news", "blogs", "papers", "forums"]}),
                    "language": {"anyOf": [{"type": "string", "enum": ["en", "fr", "de", "es"]}, {"type": "null"}]},
                }
            ),
            "max_results": _INTEGER,
        }
    ),
    "moderation": _object(
        {
            "flagged": _BOOLEAN,
            "categories": _object(
                {name: _BOOLEAN for name in ("hate", "harassment", "self_harm", "sexual", "violence")}
            ),
            "scores": _object({name: _NUMBER for name in ("hate", "harassment", "self_harm", "sexual", "violence")}),
        }
    ),
    "recipe": _object(
        {
            "name": _STRING,
            "servings": _INTEGER,
            "ingredients": _array(
                _object({"item": _STRING, "amount": _NUMBER, "unit": _nullable("string")}), minItems=1
            ),
            "steps": _array(_STRING, minItems=1),
            "vegetarian": _BOOLEAN,
        }
    ),
    "get_weather_args": _object(
        {
            "location": _STRING,
            "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            "days": _nullable("integer"),
        }
    ),
}
