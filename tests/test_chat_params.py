"""Chat parameters beyond sampling: tool calls parsed out of replies (a scripted engine, through
the official client), and logprobs, penalties and logit_bias on the real model."""

import collections
import json

import openai
import pytest
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from openft.inference.engine import Chunk
from openft.inference.tool_calls import parse_tool_calls
from openft.models.store import register_base
from openft.server.app import create_app
from openft.settings import BUNDLED_MODEL, Settings
from openft.store.db import Database
from tests.conftest import in_process_client

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
