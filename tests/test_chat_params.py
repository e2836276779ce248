"""Chat parameters beyond sampling: tool calls parsed out of replies and n choices streamed
together (scripted engines, through the official client), and logprobs, penalties and logit_bias
on the real model."""

import collections
import json
import threading
import time

import openai
import pytest
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from openft.inference.engine import Chunk
from openft.inference.tool_calls import parse_tool_calls
from openft.models.store import register_base
from openft.server.app import create_app
from openft.settings import BUNDLED_MODEL, Settings
from openft.store.db import Database
from tests.helpers import in_process_client

WEATHER = {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}
CALL = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'
ASK = [{"role": "user", "content": "Weather in Paris?"}]


# ---------------------------------------------------------------------------------------------
# the parser


def test_calls_are_parsed_out_of_the_text():
    content, calls = parse_tool_calls(f"Let me look.\n{CALL}\n{CALL.replace('Paris', 'Lima')}")
    assert content == "Let me look."
    assert [(c.name, json.loads(c.arguments)) for c in calls] == [
        ("get_weather", {"city": "Paris"}),
        ("get_weather", {"city": "Lima"}),
    ]
    assert parse_tool_calls(CALL)[0] is None  # nothing else was said


def test_text_without_a_valid_call_is_left_alone():
    for text in ("Sunny.", "<tool_call>\n{not json}\n</tool_call>", '<tool_call>{"arguments": {}}</tool_call>'):
        assert parse_tool_calls(text) == (text, [])


# ---------------------------------------------------------------------------------------------
# through the API, with an engine that answers with a call


class CallingEngine:
    def __init__(self, reply: str):
        self.reply = reply

    def context_length(self, model):
        return 8192

    def count_prompt_tokens(self, model, prompt):
        return 7

    def generate(self, model, prompt, params):
        self.prompt = prompt
        yield Chunk(self.reply, "stop", 7, 20)


@pytest.fixture
def client(tmp_path):
    settings = Settings(data_dir=tmp_path)
    register_base(Database(settings), BUNDLED_MODEL)  # a name only: no weights
    app = create_app(settings, run_worker=False)
    app.state.chat.engine = CallingEngine(f"Checking.\n{CALL}")
    return in_process_client(app), app


def test_a_reply_with_a_call_is_a_tool_call(client):
    client, app = client
    completion = client.chat.completions.create(model="gpt-3.5-turbo", messages=ASK, tools=[WEATHER])

    assert isinstance(completion, ChatCompletion)
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content == "Checking."
    [call] = choice.message.tool_calls
    assert call.id.startswith("call_") and call.type == "function"
    assert (call.function.name, json.loads(call.function.arguments)) == ("get_weather", {"city": "Paris"})
    assert app.state.chat.engine.prompt.tools == [WEATHER]  # the template sees the tools

    plain = client.chat.completions.create(model="gpt-3.5-turbo", messages=ASK)  # no tools offered
    assert plain.choices[0].message.tool_calls is None and CALL in plain.choices[0].message.content
    declined = client.chat.completions.create(model="gpt-3.5-turbo", messages=ASK, tools=[WEATHER], tool_choice="none")
    assert declined.choices[0].finish_reason == "stop"


def test_a_streamed_call_arrives_as_tool_call_deltas(client):
    client, _ = client
    chunks = list(client.chat.completions.create(model="gpt-3.5-turbo", messages=ASK, tools=[WEATHER], stream=True))

    assert all(isinstance(chunk, ChatCompletionChunk) for chunk in chunks)
    calls = [call for chunk in chunks for choice in chunk.choices for call in choice.delta.tool_calls or []]
    assert [(c.index, c.function.name, json.loads(c.function.arguments)) for c in calls] == [
        (0, "get_weather", {"city": "Paris"})
    ]
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


def test_legacy_functions_get_a_function_call(client):
    client, _ = client
    completion = client.chat.completions.create(model="gpt-3.5-turbo", messages=ASK, functions=[WEATHER["function"]])
    choice = completion.choices[0]
    assert choice.finish_reason == "function_call" and choice.message.function_call.name == "get_weather"


def test_bad_logprob_and_bias_requests_are_400(client):
    client, _ = client
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="gpt-3.5-turbo", messages=ASK, top_logprobs=2)
    assert caught.value.body["param"] == "top_logprobs"
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="gpt-3.5-turbo", messages=ASK, logit_bias={"hello": 5})
    assert caught.value.body["param"] == "logit_bias"


# ---------------------------------------------------------------------------------------------
# n choices, streamed


class ChoirEngine:
    """Each generation waits until every one of the n has started, then streams three words
    marked with its seed: were the choices generated one after another, the first would wait
    in vain (the barrier breaks after 10 s, and the stream ends in an error)."""

    def __init__(self, n: int):
        self.barrier = threading.Barrier(n, timeout=10)

    def context_length(self, model):
        return 8192

    def count_prompt_tokens(self, model, prompt):
        return 7

    def generate(self, model, prompt, params):
        self.barrier.wait()
        for word in ("one", " two", " three"):
            yield Chunk(f"{word}{params.seed}")
        yield Chunk("", "stop", 7, 3)


def test_n_streamed_choices_are_generated_together(client):
    client, app = client
    app.state.chat.engine = ChoirEngine(3)
    chunks = list(
        client.chat.completions.create(
            model="gpt-3.5-turbo",
            messages=ASK,
            n=3,
            seed=5,
            stream=True,
            stream_options={"include_usage": True},
        )
    )

    choices = [choice for chunk in chunks for choice in chunk.choices]
    for index in range(3):
        mine = [choice for choice in choices if choice.index == index]
        assert mine[0].delta.role == "assistant"
        seed = 5 + index
        assert "".join(choice.delta.content or "" for choice in mine) == f"one{seed} two{seed} three{seed}"
        assert [choice.finish_reason for choice in mine if choice.finish_reason] == ["stop"]
        assert mine[-1].finish_reason == "stop"
    assert (chunks[-1].usage.prompt_tokens, chunks[-1].usage.completion_tokens) == (7, 9)


class OneChoiceFails:
    """The choice of seed 1 fails after its first chunk; the others stream until they are stopped."""

    def __init__(self):
        self.stopped = []

    def context_length(self, model):
        return 8192

    def count_prompt_tokens(self, model, prompt):
        return 7

    def generate(self, model, prompt, params):
        if params.seed == 1:
            yield Chunk("a")
            raise RuntimeError("the engine broke")
        try:
            while True:
                yield Chunk("b")
                time.sleep(0.01)
        finally:
            self.stopped.append(params.seed)


def test_a_failed_choice_ends_the_stream_with_an_error_and_stops_the_others(client):
    client, app = client
    app.state.chat.engine = engine = OneChoiceFails()
    body = {"model": "gpt-3.5-turbo", "messages": ASK, "n": 3, "seed": 0, "stream": True}
    with client._client.stream("POST", "/v1/chat/completions", json=body) as response:
        lines = [line for line in response.iter_lines() if line]
        deadline = time.monotonic() + 10  # (the app's event loop lives as long as the response)
        while len(engine.stopped) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)

    assert lines[-1] == "data: [DONE]"
    error = json.loads(lines[-2].removeprefix("data: "))["error"]
    assert error["type"] == "server_error" and "the engine broke" in error["message"]
    assert sorted(engine.stopped) == [0, 2]


# ---------------------------------------------------------------------------------------------
# the real model


def ask(live_server, max_tokens: int = 24, **kwargs):
    return live_server.client().chat.completions.create(
        model="gpt-3.5-turbo",
        messages=[{"role": "user", "content": "Write the word cat ten times."}],
        temperature=0,
        max_tokens=max_tokens,
        **kwargs,
    )


def test_logprobs_describe_the_tokens_of_the_reply(live_server):
    choice = ask(live_server, logprobs=True, top_logprobs=3).choices[0]
    tokens = choice.logprobs.content

    assert "".join(t.token for t in tokens) == choice.message.content
    assert all(t.logprob <= 0 and len(t.top_logprobs) == 3 for t in tokens)
    # greedy: the chosen token is the most likely one, and the alternatives come most likely first
    assert all(
        t.top_logprobs[0].token == t.token and t.top_logprobs[0].logprob == pytest.approx(t.logprob) for t in tokens
    )
    assert all(
        [a.logprob for a in t.top_logprobs] == sorted((a.logprob for a in t.top_logprobs), reverse=True) for t in tokens
    )

    streamed = list(
        live_server.client().chat.completions.create(
            model="gpt-3.5-turbo",
            messages=[{"role": "user", "content": "Write the word cat ten times."}],
            temperature=0,
            max_tokens=24,
            logprobs=True,
            stream=True,
        )
    )
    assert [t.token for c in streamed for ch in c.choices if ch.logprobs for t in ch.logprobs.content] == [
        t.token for t in tokens
    ]


def test_frequency_penalty_breaks_repetition_and_logit_bias_forces_a_token(live_server):
    def most_repeated(choice) -> int:
        return collections.Counter(t.token for t in choice.logprobs.content).most_common(1)[0][1]

    plain = ask(live_server, logprobs=True).choices[0]
    penalized = ask(live_server, logprobs=True, frequency_penalty=2.0, presence_penalty=1.0).choices[0]
    assert most_repeated(penalized) < most_repeated(plain)

    forced = ask(live_server, logprobs=True, logit_bias={"1000": 100}, max_tokens=5).choices[0]
    assert len({t.token for t in forced.logprobs.content}) == 1
