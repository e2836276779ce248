"""Structured outputs with the legacy openai==0.28 module API, which passes `response_format`,
`functions` and `function_call` through as it got them.

Run in a subprocess whose sys.path starts with a folder holding openai 0.28.1:
    python structured.py BASE_URL
Prints one JSON object with what it saw; any failure raises (non-zero exit).
"""

import json
import sys

import openai

assert openai.version.VERSION.startswith("0.28"), openai.version.VERSION

openai.api_base = sys.argv[1]
openai.api_key = "sk-legacy"
MODEL = "gpt-3.5-turbo"
ASK = [
    {"role": "system", "content": "You are a helpful assistant. Reply in JSON."},
    {"role": "user", "content": "What is the capital of Italy?"},
]
CITY = {
    "type": "object",
    "properties": {"city": {"type": "string"}, "country": {"type": "string"}},
    "required": ["city", "country"],
    "additionalProperties": False,
}

mode = openai.ChatCompletion.create(
    model=MODEL, messages=ASK, temperature=0, max_tokens=80, response_format={"type": "json_object"}
)
assert isinstance(json.loads(mode.choices[0].message.content), dict), mode

schema_format = {"type": "json_schema", "json_schema": {"name": "city", "schema": CITY, "strict": True}}
city = openai.ChatCompletion.create(
    model=MODEL, messages=ASK, temperature=0, max_tokens=80, response_format=schema_format
)
assert city.choices[0].finish_reason == "stop", city
assert set(json.loads(city.choices[0].message.content)) == {"city", "country"}

called = openai.ChatCompletion.create(
    model=MODEL,
    messages=ASK,
    temperature=0,
    max_tokens=80,
    functions=[{"name": "lookup_city", "parameters": CITY}],
    function_call={"name": "lookup_city"},
)
call = called.choices[0].message.function_call
assert called.choices[0].finish_reason == "function_call" and call.name == "lookup_city", called
assert set(json.loads(call.arguments)) == {"city", "country"}

loose = {"type": "json_schema", "json_schema": {"name": "loose", "schema": {"type": "object"}, "strict": True}}
try:
    openai.ChatCompletion.create(model=MODEL, messages=ASK, response_format=loose)
    raise AssertionError("expected an error")
except openai.error.InvalidRequestError as error:
    assert error.http_status == 400 and error.code == "invalid_json_schema", error

print(json.dumps({"json_object": mode.choices[0].message.content, "city": city.choices[0].message.content}))
