"""Chat requests at and past the edges of OpenAI's ranges, what each must be answered with, and
a client that sends them: shared by tests/test_serving_fuzz.py (a bounded run in CI) and
bench/serving_soak.py (thousands of requests, memory watched)."""

import json
import random
import time
from dataclasses import dataclass

import httpx

from tests.structured_cases import STRING, WEATHER, obj, response_format

ANSWERED_WITHIN = 90  # seconds, for each request, queued behind the others on 2 shared cores
USER = [{"role": "user", "content": "Say hi."}]
JSON_USER = [{"role": "user", "content": "Reply in json: the capital of France."}]
ORDINARY = {"model": "gpt-3.5-turbo", "messages": USER, "temperature": 0, "max_tokens": 6}
CITY = obj({"city": STRING})


@dataclass
class Case:
    name: str
    body: dict | bytes
    expected: int | None = 200  # None: 200 or 400
    leaves: bool = False  # a streaming client that goes away after the first frame


def request(**fields) -> dict:
    return {"model": "gpt-3.5-turbo", "messages": USER, "max_tokens": 4, **fields}


def edge_cases() -> list[Case]:
    long_text = "The quick brown fox jumps over the lazy dog. " * 20  # ~200 tokens: a long prefill here
    return [
        # sampling at and past its edges
        Case("temperature 1e-40", request(temperature=1e-40)),
        Case("temperature denormal", request(temperature=5e-324)),
        Case("temperature 2", request(temperature=2, seed=3)),
        Case("temperature over 2", request(temperature=2.0000001), 400),
        Case("temperature negative", request(temperature=-1e-9), 400),
        Case(
            "temperature NaN",
            b'{"model": "gpt-3.5-turbo", "messages": [{"role": "user", "content": "hi"}], "temperature": NaN}',
            400,
        ),
        Case("temperature a string", request(temperature="hot"), 400),
        Case("top_p 0", request(top_p=0, seed=4)),
        Case("top_p 1e-300", request(top_p=1e-300)),
        Case("top_p over 1", request(top_p=1.5), 400),
        Case("penalties at their edges", request(presence_penalty=-2, frequency_penalty=2, temperature=1)),
        Case("penalty past 2", request(frequency_penalty=2.5), 400),
        # how many, how long
        Case("n 32", request(n=32, max_tokens=1, temperature=1, seed=7)),  # n 128: bench/serving_soak.py
        Case("n 129", request(n=129), 400),
        Case("n 0", request(n=0), 400),
        Case("max_tokens 0", request(max_tokens=0), 400),
        Case("max_tokens past the context", request(max_tokens=10**9), 400),
        Case("max_completion_tokens past the context", request(max_completion_tokens=10**18), 400),
        # logprobs, seeds, stops, biases
        Case("top_logprobs 20", request(logprobs=True, top_logprobs=20)),
        Case("top_logprobs 21", request(logprobs=True, top_logprobs=21), 400),
        Case("top_logprobs without logprobs", request(top_logprobs=2), 400),
        Case("seed at its lowest", request(seed=-(2**63), temperature=1)),
        Case("seed at its highest, n 2", request(seed=2**63 - 1, n=2, temperature=1)),
        Case("seed past 64 bits", request(seed=2**64), 400),
        Case("four stops", request(stop=["\n", "}", '"', " "], max_tokens=8)),
        Case("an empty stop", request(stop="")),
        Case("a long stop", request(stop="x" * 2000, max_tokens=8)),
        Case("five stops", request(stop=["a", "b", "c", "d", "e"]), 400),
        Case("logit_bias at its edges", request(logit_bias={"0": 100, "1": -100})),
        Case("logit_bias forcing the end", request(logit_bias={"2": 100})),
        Case("logit_bias of 5,000 tokens", request(logit_bias={str(t): -100 for t in range(10, 5010)})),
        Case("logit_bias past the vocabulary", request(logit_bias={"99999999999": 5})),
        Case("logit_bias past 100", request(logit_bias={"5": 101}), 400),
        Case("logit_bias by text", request(logit_bias={"abc": 1}), 400),
        # structured outputs and tools
        Case("json_object", request(messages=JSON_USER, response_format={"type": "json_object"}, max_tokens=8)),
        Case("json_object unasked", request(response_format={"type": "json_object"}), 400),
        Case(
            "strict schema with stops",
            request(messages=JSON_USER, response_format=response_format("city", CITY), stop=['"', ", "], max_tokens=8),
        ),
        Case(
            "strict schema outside the subset", request(response_format=response_format("x", {"type": "object"})), 400
        ),
        Case("schema without a name", request(response_format={"type": "json_schema", "json_schema": {}}), 400),
        Case("response_format of no type", request(response_format={"type": "bogus"}), 400),
        Case("strict tool, auto", request(tools=[WEATHER], max_tokens=8)),
        Case("tool call forced", request(tools=[WEATHER], tool_choice="required", max_tokens=8)),
        Case(
            "tool named",
            request(tools=[WEATHER], tool_choice={"type": "function", "function": {"name": "get_weather"}}),
        ),
        Case(
            "tool named but not offered",
            request(tools=[WEATHER], tool_choice={"type": "function", "function": {"name": "nope"}}),
            400,
        ),
        Case("tool_choice without tools", request(tool_choice="required"), 400),
        Case("a tool without a function", request(tools=[{"type": "function"}]), 400),
        Case(
            "tools and a schema",
            request(messages=JSON_USER, tools=[WEATHER], response_format=response_format("city", CITY), max_tokens=8),
        ),
        # messages
        Case("no messages", request(messages=[]), 400),
        Case("a role of no kind", request(messages=[{"role": "wizard", "content": "hi"}]), 400),
        Case("content parts", request(messages=[{"role": "user", "content": [{"type": "text", "text": "hi"}]}])),
        Case("a text part without text", request(messages=[{"role": "user", "content": [{"type": "text"}]}]), 400),
        Case(
            "a call without a function",
            request(messages=[*USER, {"role": "assistant", "tool_calls": [{"id": "1"}]}]),
            400,
        ),
        Case(
            "a lone surrogate",
            b'{"model": "gpt-3.5-turbo", "messages": [{"role": "user", "content": "hi \\ud800"}]}',
            400,
        ),
        Case(
            "a lone surrogate in a schema key",
            json.dumps(
                request(messages=JSON_USER, response_format=response_format("s", obj({"\udc00": STRING})))
            ).encode(),
            400,
        ),
        Case(
            "malformed UTF-8", b'{"model": "gpt-3.5-turbo", "messages": [{"role": "user", "content": "\xff\xfe"}]}', 400
        ),
        Case("not JSON", b'{"model": "gpt-3.5-turbo", "messages": [', 400),
        Case("long content", request(messages=[{"role": "user", "content": long_text}])),
        Case("content past the context", request(messages=[{"role": "user", "content": "word " * 40_000}]), 400),
        # streams
        Case("streamed, with usage", request(stream=True, stream_options={"include_usage": True}, n=2, temperature=1)),
        Case("streamed logprobs", request(stream=True, logprobs=True, top_logprobs=3)),
        Case("streamed strict tool", request(stream=True, tools=[WEATHER], tool_choice="required", max_tokens=8)),
        Case("left mid-stream", request(stream=True, max_tokens=300, logit_bias={"2": -100}), leaves=True),
        Case("left mid-stream, n 4", request(stream=True, n=4, max_tokens=300, temperature=1), leaves=True),
    ]


def random_mixes(rng: random.Random, count: int) -> list[Case]:
    """Mixes of parameters, each drawn from values inside and past OpenAI's ranges."""
    pools = {
        "temperature": [0, 1e-30, 0.7, 2, 2.5, -1],
        "top_p": [0, 1e-9, 0.5, 1, 1.01],
        "n": [1, 2, 3, 200],
        "max_tokens": [1, 3, 5, 0],
        "logprobs": [True, False],
        "top_logprobs": [0, 5, 20, 30],
        "seed": [0, -1, 2**63 - 1, 2**70],
        "stop": [None, "\n", ["a", "b"], ["}", '"', ",", ":"], [""] * 5],
        "presence_penalty": [-2, 0, 2, -3],
        "frequency_penalty": [-2, 1, 2, 9],
        "logit_bias": [{}, {"2": -100}, {"2": 100}, {"0": -100, "100": 100}, {"7": 1000}],
        "response_format": [None, {"type": "text"}, {"type": "json_object"}, response_format("city", CITY)],
        "tools": [None, [WEATHER]],
        "stream": [False, True],
    }
    cases = []
    for number in range(count):
        chosen = {name: rng.choice(values) for name, values in pools.items() if rng.random() < 0.5}
        body = {"model": "gpt-3.5-turbo", "messages": JSON_USER, "max_tokens": 4, **chosen}
        cases.append(Case(f"mix {number}: {sorted(chosen)}", {k: v for k, v in body.items() if v is not None}, None))
    return cases


@dataclass
class Answer:
    status: int
    seconds: float
    body: dict | None = None  # a whole reply's JSON
    frames: list[str] | None = None  # a stream's data payloads


def send(http: httpx.Client, case: Case) -> Answer:
    started = time.monotonic()
    body = case.body if isinstance(case.body, bytes) else json.dumps(case.body).encode()
    headers = {"Content-Type": "application/json"}
    with http.stream("POST", "/chat/completions", content=body, headers=headers) as response:
        if response.status_code != 200 or "text/event-stream" not in response.headers.get("content-type", ""):
            response.read()
            return Answer(response.status_code, time.monotonic() - started, body=response.json())
        frames = []
        for line in response.iter_lines():
            if line.startswith("data: "):
                frames.append(line.removeprefix("data: "))
                if case.leaves:
                    break  # leaving the block closes the connection mid-stream
        return Answer(200, time.monotonic() - started, frames=frames)


def check(case: Case, answer: Answer) -> None:
    assert answer.seconds < ANSWERED_WITHIN, (case.name, answer.seconds)
    assert answer.status < 500, (case.name, answer.body)
    allowed = (200, 400) if case.expected is None else (case.expected,)
    assert answer.status in allowed, (case.name, answer.status, answer.body)
    if answer.status == 400:
        error = answer.body["error"]
        assert set(error) == {"message", "type", "param", "code"} and error["type"] == "invalid_request_error"
    elif answer.frames is not None and not case.leaves:
        assert answer.frames[-1] == "[DONE]", case.name
        assert all("error" not in json.loads(frame) for frame in answer.frames[:-1]), (case.name, answer.frames)
    elif answer.frames is None:
        assert answer.body["choices"] and all(c["finish_reason"] for c in answer.body["choices"]), case.name
