"""Structured outputs, the request side: `response_format` (json_object, json_schema), strict
tools and forced `tool_choice`. OpenAI's strict-subset check, the 400s and what reaches the
engine (through the official client in process, with a recording engine), and the grammars
against the bundled model's tokenizer. The model decoding under them: test_structured_serving.py."""

import json

import llguidance
import llguidance.hf
import openai
import pytest
from openai.lib._pydantic import to_strict_json_schema
from pydantic import BaseModel
from transformers import AutoTokenizer

from openft.inference.constraints import Tool, json_grammar, tools_grammar
from openft.inference.engine import Chunk
from openft.models.store import register_base
from openft.server.app import create_app
from openft.services.strict_schema import strict_schema_error
from openft.settings import BUNDLED_MODEL, Settings
from openft.store.db import Database
from tests.helpers import in_process_client
from tests.structured_cases import CASES, POINT, STRING, TIME, WEATHER, obj, response_format

# ---------------------------------------------------------------------------------------------
# OpenAI's strict subset


class Address(BaseModel):
    city: str
    zip: str | None


class Person(BaseModel):
    name: str
    age: int
    address: Address
    tags: list[str]


def test_the_strict_subset_takes_what_openai_takes():
    recursive = obj({"label": STRING, "children": {"type": "array", "items": {"$ref": "#"}}})
    for schema in [*(case[0] for case in CASES.values()), to_strict_json_schema(Person), recursive]:
        assert strict_schema_error(schema) is None, schema


@pytest.mark.parametrize(
    "schema, message",
    [
        (
            {"type": "array", "items": STRING},
            """schema must be a JSON Schema of 'type: "object"', got 'type: "array"'.""",
        ),
        (
            {"type": "object", "properties": {"a": STRING}, "required": ["a"]},
            "In context=(), 'additionalProperties' is required to be supplied and to be false.",
        ),
        (
            obj({"a": obj({"b": STRING}, required=[])}),
            "In context=('properties', 'a'), 'required' is required to be supplied and to be an array including "
            "every key in properties. Missing 'b'.",
        ),
        (obj({"a": {"description": "no type"}}), "In context=('properties', 'a'), schema must have a 'type' key."),
        (obj({"a": {"allOf": [STRING]}}), "In context=('properties', 'a'), 'allOf' is not permitted."),
        (obj({"a": {"type": "string", "format": "binary"}}), """In context=('properties', 'a'), format "binary" is"""),
        (obj({"a": {"type": "string", "minimum": 1}}), "In context=('properties', 'a'), 'minimum' is not permitted"),
        (
            obj({"a": {"$ref": "#/$defs/b"}}, **{"$defs": {"b": {"type": "object", "properties": {}}}}),
            "In context=('$defs', 'b'), 'additionalProperties' is required",
        ),
        (
            obj({"a": {"type": "array", "items": {"type": "array", "items": obj({"c": {"type": "strin"}})}}}),
            """In context=('properties', 'a', 'items', 'items', 'properties', 'c'), "strin" is not a valid type.""",
        ),
    ],
)
def test_a_schema_outside_the_strict_subset_is_named_with_its_context(schema, message):
    assert strict_schema_error(schema).startswith(message)


def test_the_strict_subset_limits_nesting_and_enums():
    deep = STRING
    for _ in range(11):
        deep = obj({"x": deep})
    assert "nested more than 10 levels" in strict_schema_error(deep)
    assert "at most 1000" in strict_schema_error(obj({"a": {"type": "integer", "enum": list(range(1001))}}))


# ---------------------------------------------------------------------------------------------
# through the API in process: what reaches the engine, and the 400s


class RecordingEngine:
    """Answers every request with `reply`, recording the sampling parameters it was given."""

    def __init__(self, reply: str):
        self.reply, self.params = reply, []

    def context_length(self, model):
        return 8192

    def count_prompt_tokens(self, model, prompt):
        return 7

    def generate(self, model, prompt, params):
        self.params.append(params)
        yield Chunk(self.reply, "stop", 7, 9)


@pytest.fixture
def api(tmp_path):
    settings = Settings(data_dir=tmp_path)
    register_base(Database(settings), BUNDLED_MODEL)  # a name only: no weights
    app = create_app(settings, run_worker=False)
    ada = Person(name="Ada", age=36, address=Address(city="London", zip=None), tags=["math"])
    engine = app.state.chat.engine = RecordingEngine(ada.model_dump_json())
    return in_process_client(app), engine


ASK = [{"role": "user", "content": "Tell me about Ada Lovelace."}]


def bad_request(client, **request) -> openai.BadRequestError:
    with pytest.raises(openai.BadRequestError) as raised:
        client.chat.completions.create(model="gpt-3.5-turbo", **{"messages": ASK, **request})
    return raised.value


def test_a_grammar_reaches_the_engine_only_when_the_reply_is_constrained(api):
    client, engine = api
    completion = client.chat.completions.parse(model="gpt-3.5-turbo", messages=ASK, response_format=Person)
    assert completion.choices[0].message.parsed.address.city == "London"
    assert "%json" in engine.params[-1].grammar and '"additionalProperties": false' in engine.params[-1].grammar
    for free in ({}, {"response_format": {"type": "text"}}, {"tools": [{**WEATHER, "function": {"name": "f"}}]}):
        client.chat.completions.create(model="gpt-3.5-turbo", messages=ASK, **free)
        assert engine.params[-1].grammar is None, free
    client.chat.completions.create(model="gpt-3.5-turbo", messages=ASK, tools=[WEATHER])  # strict: held to it
    assert "<tool_call>" in engine.params[-1].grammar


def test_json_mode_needs_the_word_json(api):
    client, engine = api
    error = bad_request(client, response_format={"type": "json_object"})
    assert error.param == "messages" and "must contain the word 'json'" in error.message
    asked = [{"role": "system", "content": "Answer in JSON."}, *ASK]
    client.chat.completions.create(model="gpt-3.5-turbo", messages=asked, response_format={"type": "json_object"})
    assert engine.params[-1].grammar.startswith("start: %json")


def test_a_strict_schema_outside_the_subset_is_a_400_naming_it(api):
    client, _ = api
    loose = {"type": "object", "properties": {"name": STRING}, "required": ["name"]}
    error = bad_request(client, response_format=response_format("person", loose))
    assert (error.status_code, error.code, error.param) == (400, "invalid_json_schema", "response_format")
    assert error.body["message"] == (
        "Invalid schema for response_format 'person': In context=(), 'additionalProperties' is required to be "
        "supplied and to be false."
    )
    bad_pattern = {"type": "object", "properties": {"s": {"type": "string", "pattern": "(unclosed"}}}
    error = bad_request(client, response_format=response_format("p", bad_pattern, strict=False))
    assert error.code == "invalid_json_schema" and "Invalid schema for response_format 'p'" in error.message


def test_a_strict_tool_outside_the_subset_is_a_400_naming_it(api):
    client, _ = api
    loose = {**WEATHER, "function": {**WEATHER["function"], "parameters": {"type": "object", "properties": {}}}}
    error = bad_request(client, tools=[TIME, loose])
    assert (error.code, error.param) == ("invalid_function_parameters", "tools[1].function.parameters")
    assert error.body["message"].startswith(
        "Invalid schema for function 'get_weather': In context=(), 'additionalProperties'"
    )


def test_malformed_structured_requests_are_400(api):
    client, _ = api
    assert bad_request(client, response_format={"type": "xml"}).param == "response_format.type"
    assert bad_request(client, response_format={"type": "json_schema"}).code == "missing_required_parameter"
    nameless = {"type": "json_schema", "json_schema": {"schema": obj({})}}
    assert bad_request(client, response_format=nameless).param == "response_format.json_schema.name"
    assert bad_request(client, response_format=response_format("bad name!", obj({}))).code == "invalid_value"
    assert bad_request(client, tool_choice="required").param == "tool_choice"
    unknown = {"type": "function", "function": {"name": "get_time"}}
    assert "no function named 'get_time'" in bad_request(client, tools=[WEATHER], tool_choice=unknown).message
    assert bad_request(client, tools=[WEATHER], tool_choice="always").code == "invalid_value"
    not_a_function = {"type": "function", "function": "x"}
    assert bad_request(client, tools=[WEATHER], tool_choice=not_a_function).param == "tool_choice"
    assert bad_request(client, tools=[{"type": "function", "function": "x"}]).param == "tools[0].function"


# ---------------------------------------------------------------------------------------------
# the grammars, against the bundled model's tokenizer


@pytest.fixture(scope="module")
def matcher(model_store):
    tokenizer = AutoTokenizer.from_pretrained(model_store / BUNDLED_MODEL)
    ll_tokenizer = llguidance.hf.from_tokenizer(tokenizer, n_vocab=len(tokenizer))

    def accepts(grammar: str, text: str) -> bool:
        state = llguidance.LLMatcher(ll_tokenizer, llguidance.LLMatcher.grammar_from_lark(grammar))
        tokens = tokenizer.encode(text)
        return state.try_consume_tokens(tokens) == len(tokens) and state.is_accepting()

    return accepts


CALL = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris", "unit": "celsius"}}\n</tool_call>'
TIME_CALL = '<tool_call>\n{"name": "get_time", "arguments": {"timezone": "UTC"}}\n</tool_call>'


def test_json_grammars_take_json_dumps_output_only(matcher):
    schema = CASES["nested"][0]
    value = {"person": {"name": "Ada", "address": {"city": "London", "country": "UK"}}}
    assert matcher(json_grammar(schema, True), json.dumps(value))
    assert not matcher(json_grammar(schema, True), json.dumps(value, separators=(",", ":")))  # json.dumps's spacing
    assert not matcher(json_grammar(schema, True), json.dumps({**value, "extra": 1}))
    assert not matcher(json_grammar(schema, True), json.dumps(value) + "\n")


def test_tool_grammars_hold_calls_to_their_schemas(matcher):
    tools = [Tool(t["function"]["name"], t["function"]["parameters"], True) for t in (WEATHER, TIME)]
    forced = tools_grammar(tools, forced=True, parallel=True, reply_schema=None)
    assert matcher(forced, CALL) and matcher(forced, f"{CALL}\n{TIME_CALL}")
    assert not matcher(forced, "Sunny.") and not matcher(forced, CALL[:-1])
    assert not matcher(tools_grammar(tools, forced=True, parallel=False, reply_schema=None), f"{CALL}\n{TIME_CALL}")
    offered = tools_grammar(tools, forced=False, parallel=True, reply_schema=None)
    assert matcher(offered, "Sunny.") and matcher(offered, f"Let me look.\n{CALL}")
    assert not matcher(offered, CALL.replace('"celsius"', '"kelvin"'))  # strict: the enum holds
    assert not matcher(offered, 'Hm <tool_call>\n{"name": "bogus", "arguments": {}}\n</tool_call>')
    with_reply = tools_grammar(tools, forced=False, parallel=True, reply_schema=(POINT, True))
    assert matcher(with_reply, '{"x": 1, "y": 2}') and matcher(with_reply, CALL) and not matcher(with_reply, "Hi")
