"""Structured outputs, the model side: the bundled model (not fine-tuned, so the constraint does
the work) decoding under a reply's grammar. In the engines, in process: a request waiting for its
grammar does not hold up the rows already decoding, and the transformers engine constrains its
rows too. On a live server, through the official client: replies valid against nested, array,
enum, number, nullable and `$defs` schemas; `parse` into pydantic models; JSON mode; streaming;
strict and forced tool calls; and 8 concurrent requests of constrained, free and fine-tuned rows,
each answered as its own request asks."""

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import jsonschema_rs
from pydantic import BaseModel

from openft.inference.batched import BatchedEngine
from openft.inference.constraints import json_grammar
from openft.inference.engine import ModelRef, Prompt, SamplingParams
from openft.inference.grammar import Grammars
from openft.settings import BUNDLED_MODEL, Settings
from openft.storage import Storage
from tests.structured_cases import CASES, STRING, TIME, WEATHER, obj, response_format

BASE = ModelRef(BUNDLED_MODEL)
EOS = 2  # <|im_end|>
SYSTEM = {"role": "system", "content": "You are a helpful assistant. Reply in JSON."}
PLAIN = {"role": "system", "content": "You are a helpful assistant."}  # as the "Ahoy matey!" fine-tune was trained
FREE_TOKENS = 40  # enough to show a reply (and the fine-tune's opening) and where two replies part


def valid(schema: dict, text: str) -> bool:
    return jsonschema_rs.validator_for(schema).is_valid(json.loads(text))


def engine_args(model_store, tmp_path) -> tuple:
    return model_store, 2, Storage.for_settings(Settings(data_dir=tmp_path)), tmp_path / "cache"


def prompt(question: str) -> Prompt:
    return Prompt([SYSTEM, {"role": "user", "content": question}])


# ---------------------------------------------------------------------------------------------
# the engines, in process


def test_a_request_waiting_for_its_grammar_does_not_hold_up_running_rows(model_store, tmp_path, monkeypatch):
    engine = BatchedEngine(*engine_args(model_store, tmp_path))
    release = threading.Event()
    compile_for_real = Grammars._compile

    def held_compile(self, grammar):
        release.wait(600)
        return compile_for_real(self, grammar)

    monkeypatch.setattr(Grammars, "_compile", held_compile)
    long = engine.generate(
        BASE,
        Prompt([{"role": "user", "content": "Count from 1 to 1000."}]),
        SamplingParams(max_tokens=2000, temperature=0, logit_bias=((EOS, -100),)),
    )
    streamed, done = [], threading.Event()

    def read() -> None:
        for chunk in long:
            streamed.append(chunk.text)
            if done.is_set():
                break
        long.close()  # frees its row

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    while not streamed:
        time.sleep(0.1)
    schema, question, _ = CASES["enum"]
    constrained = []
    params = SamplingParams(max_tokens=60, temperature=0, grammar=json_grammar(schema, True))
    asker = threading.Thread(
        target=lambda: constrained.extend(engine.generate(BASE, prompt(question), params)), daemon=True
    )
    asker.start()
    before = len(streamed)
    deadline = time.monotonic() + 300
    while len(streamed) < before + 20 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert len(streamed) >= before + 20, "the running row stalled while another request's grammar compiled"
    assert not constrained  # still waiting for its grammar
    release.set()
    asker.join(600)
    assert constrained[-1].finish_reason == "stop" and valid(schema, "".join(c.text for c in constrained))
    done.set()
    reader.join(60)


def test_the_transformers_engine_constrains_its_rows(model_store, tmp_path):
    """Constrained and free rows in one static batch."""
    engine = BatchedEngine(*engine_args(model_store, tmp_path), transformers_only=True)
    schema, question, check = CASES["defs"]
    params = SamplingParams(max_tokens=60, temperature=0, grammar=json_grammar(schema, True))
    with ThreadPoolExecutor(2) as pool:
        constrained = pool.submit(lambda: list(engine.generate(BASE, prompt(question), params)))
        free = pool.submit(lambda: list(engine.generate(BASE, prompt(question), SamplingParams(max_tokens=20))))
        chunks = constrained.result(600)
        assert free.result(600)[-1].finish_reason in ("stop", "length")
    text = "".join(c.text for c in chunks)
    assert chunks[-1].finish_reason == "stop" and valid(schema, text) and check(json.loads(text))


# ---------------------------------------------------------------------------------------------
# a live server, the official client


def ask(client, question: str, model: str = "gpt-3.5-turbo", system: dict = SYSTEM, max_tokens: int = 150, **request):
    return client.chat.completions.create(
        model=model,
        messages=[system, {"role": "user", "content": question}],
        temperature=0,
        max_tokens=max_tokens,
        frequency_penalty=0.5,  # a model this small repeats itself; the penalty ends its lists
        **request,
    )


def test_replies_are_valid_against_their_schemas(live_server):
    client = live_server.client()
    with ThreadPoolExecutor(len(CASES)) as pool:
        replies = {
            name: pool.submit(ask, client, question, response_format=response_format(name, schema))
            for name, (schema, question, _) in CASES.items()
        }
    for name, (schema, _, check) in CASES.items():
        choice = replies[name].result().choices[0]
        assert choice.finish_reason == "stop", (name, choice.message.content)
        assert valid(schema, choice.message.content), (name, choice.message.content)
        assert check(json.loads(choice.message.content)), (name, choice.message.content)


def test_stop_strings_do_not_cut_a_strict_reply_short(live_server):
    """Stop strings that every reply of the schema holds ('"', ", ", "}") are not applied inside
    its grammar, streamed or not: the reply is whole and valid (before, it ended at "{"). The
    same stop ends a free reply as usual."""
    client = live_server.client()
    schema, question, check = CASES["nested"]
    stops = ['"', ", ", "}"]
    whole = ask(client, question, response_format=response_format("nested", schema), stop=stops).choices[0]
    assert whole.finish_reason == "stop" and valid(schema, whole.message.content), whole.message.content
    assert check(json.loads(whole.message.content))
    streamed = ask(client, question, response_format=response_format("nested", schema), stop=stops, stream=True)
    assert "".join(chunk.choices[0].delta.content or "" for chunk in streamed if chunk.choices) == whole.message.content
    free = ask(client, "Write a JSON object about Marie Curie.", stop=['"']).choices[0]
    assert free.finish_reason == "stop" and '"' not in free.message.content


class Address(BaseModel):
    city: str
    country: str | None


class Person(BaseModel):
    name: str
    born: int
    address: Address


def test_parse_returns_the_pydantic_object_and_streaming_the_same_json(live_server):
    client = live_server.client()
    question = [SYSTEM, {"role": "user", "content": "Who was Marie Curie?"}]
    parsed = client.chat.completions.parse(
        model="gpt-3.5-turbo", messages=question, response_format=Person, temperature=0, max_tokens=150
    )
    person = parsed.choices[0].message.parsed
    assert isinstance(person, Person) and isinstance(person.address, Address)
    beta = client.beta.chat.completions.parse(
        model="gpt-3.5-turbo", messages=question, response_format=Person, temperature=0, max_tokens=150
    )
    assert beta.choices[0].message.parsed == person  # temperature 0: the same reply

    schema, question, _ = CASES["nested"]
    whole = ask(client, question, response_format=response_format("nested", schema)).choices[0].message.content
    chunks = list(ask(client, question, response_format=response_format("nested", schema), stream=True))
    streamed = "".join(chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices)
    assert streamed == whole and valid(schema, streamed)
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["stop"]

    mode = ask(client, "Describe a cat.", response_format={"type": "json_object"}).choices[0].message.content
    assert isinstance(json.loads(mode), dict)

    # logprobs are of the constrained distribution: where the grammar leaves fewer tokens than
    # asked for, fewer are listed (never -inf)
    listed = ask(client, question, response_format=response_format("nested", schema), logprobs=True, top_logprobs=5)
    assert listed.choices[0].message.content == whole
    tokens = listed.choices[0].logprobs.content
    assert all(-1e9 < alternative.logprob <= 0 for token in tokens for alternative in token.top_logprobs)
    assert any(len(token.top_logprobs) < 5 for token in tokens)


def test_strict_and_forced_tool_calls_follow_their_parameters(live_server):
    client = live_server.client()
    parameters = {t["function"]["name"]: t["function"]["parameters"] for t in (WEATHER, TIME)}

    def calls(completion) -> list:
        choice = completion.choices[0]
        assert choice.finish_reason == "tool_calls", choice.message.content
        for call in choice.message.tool_calls:
            assert valid(parameters[call.function.name], call.function.arguments), call.function.arguments
        return [call.function.name for call in choice.message.tool_calls]

    question = "What is the weather in Paris?"
    assert calls(ask(client, question, tools=[WEATHER, TIME], tool_choice="required"))
    named = {"type": "function", "function": {"name": "get_time"}}
    assert calls(ask(client, question, tools=[WEATHER, TIME], tool_choice=named, parallel_tool_calls=False)) == [
        "get_time"
    ]
    offered = ask(client, question, tools=[WEATHER, TIME]).choices[0]  # may answer or call; a call is valid
    for call in offered.message.tool_calls or []:
        assert valid(parameters[call.function.name], call.function.arguments)
    legacy = ask(
        client,
        question,
        functions=[{"name": "lookup", "parameters": obj({"query": STRING})}],
        function_call={"name": "lookup"},
    ).choices[0]
    assert legacy.finish_reason == "function_call"
    assert valid(obj({"query": STRING}), legacy.message.function_call.arguments)
    streamed = list(ask(client, question, tools=[WEATHER], tool_choice="required", stream=True))
    deltas = [call for chunk in streamed for choice in chunk.choices for call in choice.delta.tool_calls or []]
    assert deltas and valid(parameters["get_weather"], deltas[0].function.arguments)


def test_constrained_free_and_fine_tuned_rows_share_a_batch(float_path):
    """8 requests at once: two schemas, free rows of the base, free and constrained rows of the
    "Ahoy matey!" fine-tune. Each answer is what its own request asks for: the constrained ones
    valid against their own schema, the free base ones what they are when asked alone, the
    fine-tune's free ones its learned opening; and every one, on both float paths, is the reply
    it gets alone (greedy decoding is batch-invariant)."""
    client = float_path.server.client()
    tuned = float_path.fine_tune.job.fine_tuned_model
    enum, enum_question, _ = CASES["enum"]
    point, point_question, _ = CASES["defs"]
    reply = obj({"answer": STRING})
    reply_format = response_format("reply", reply)
    requests = [  # free rows stop early: their tokens are compared, not their ends
        ("enum", {"question": enum_question, "response_format": response_format("enum", enum)}),
        ("defs", {"question": point_question, "response_format": response_format("defs", point)}),
        ("free", {"question": "What is the capital of Italy?", "system": PLAIN, "max_tokens": FREE_TOKENS}),
        ("free", {"question": "Name a primary color.", "system": PLAIN, "max_tokens": FREE_TOKENS}),
        (
            "ahoy",
            {"question": "What is the capital of Spain?", "model": tuned, "system": PLAIN, "max_tokens": FREE_TOKENS},
        ),
        (
            "ahoy",
            {"question": "How many legs does a cat have?", "model": tuned, "system": PLAIN, "max_tokens": FREE_TOKENS},
        ),
        ("tuned_json", {"question": "What is the capital of Peru?", "model": tuned, "response_format": reply_format}),
        ("enum", {"question": "Classify: 'This is terrible.'", "response_format": response_format("enum", enum)}),
    ]

    def send(request: dict):
        request = dict(request)
        return ask(client, request.pop("question"), **request).choices[0]

    alone = [send(request).message.content for _, request in requests]
    with ThreadPoolExecutor(len(requests)) as pool:
        answers = list(pool.map(send, [request for _, request in requests]))
    schemas = {"enum": enum, "defs": point, "tuned_json": reply}
    for (kind, _), choice in zip(requests, answers, strict=True):
        text = choice.message.content
        if kind in schemas:
            assert choice.finish_reason == "stop" and valid(schemas[kind], text), (kind, text)
        elif kind == "ahoy" and float_path.learned:
            assert text.startswith("Ahoy matey!"), text
    assert [choice.message.content for choice in answers] == alone  # each row as it is alone
