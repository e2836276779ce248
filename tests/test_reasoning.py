"""Reasoning models, fast: the split of a reply into its thought and its answer (whole, and
streamed in every way its text can be cut), where the real templates start a reply, and what
the API makes of `reasoning_effort`, `chat_template_kwargs` and a thought (scripted engine,
official client). tests/test_reasoning_serving.py serves a fine-tuned thinking model for real."""

import json
from pathlib import Path

import openai
import pytest
import torch
from transformers.utils.chat_template_utils import render_jinja_template

from openft.inference.engine import Chunk
from openft.inference.reasoning import ReplySplitter, opening, split, thinks, tokenized_as_trained
from openft.models.store import register_base
from openft.server.app import create_app
from openft.settings import BUNDLED_MODEL, Settings
from openft.store.db import Database
from tests.helpers import in_process_client

TEMPLATES = Path(__file__).parent / "templates"
QWEN3 = (TEMPLATES / "Qwen-Qwen3-0.6B.jinja").read_text()
R1 = (TEMPLATES / "deepseek-ai-DeepSeek-R1-Distill-Qwen-32B.jinja").read_text()
ASK = [{"role": "user", "content": "Where is the treasure?"}]

# (reply, where it starts) -> (reasoning, answer), as vLLM's qwen3 and deepseek_r1 parsers split them
SPLITS = [
    ("<think>\nDig.\n</think>\n\nUnder the palm.", "either", ("Dig.", "Under the palm.")),
    ("<think>\n\n</think>\n\nUnder the palm.", "either", ("", "Under the palm.")),  # Qwen3's empty thought
    ("\n<think>Dig.</think>Under the palm.", "either", ("Dig.", "Under the palm.")),
    ("Under the palm.", "either", ("", "Under the palm.")),  # the model chose not to think
    ("<think>\nDig, then dig", "either", ("Dig, then dig", "")),  # cut short in its thought
    ("<thin", "either", ("", "<thin")),
    ("Dig.\n</think>\n\nUnder the palm.", "thought", ("Dig.", "Under the palm.")),  # R1: the prompt opened it
    ("Dig, then </thi", "thought", ("Dig, then </thi", "")),
    ("Under <think>the</think> palm.", "answer", ("", "Under <think>the</think> palm.")),  # thinking off
    ("", "either", ("", "")),
]


@pytest.mark.parametrize(("reply", "start", "parts"), SPLITS)
def test_a_reply_splits_into_thought_and_answer(reply, start, parts):
    split_reply = split(reply, start)
    assert (split_reply.reasoning, split_reply.answer) == parts


@pytest.mark.parametrize(("reply", "start", "parts"), SPLITS)
def test_a_streamed_reply_splits_the_same_wherever_it_is_cut(reply, start, parts):
    cuts = [(i, j) for i in range(len(reply) + 1) for j in range(i, len(reply) + 1)]
    for first, second in cuts:  # every way of cutting it into three pieces
        splitter, sent = ReplySplitter(start), ["", ""]
        for end in (first, second):
            reasoning, answer = splitter.advance(reply[:end])
            sent = [sent[0] + reasoning, sent[1] + answer]
        reasoning, answer = splitter.advance(reply, final=True)
        assert (sent[0] + reasoning, sent[1] + answer) == parts, (first, second)


def test_a_tag_cut_across_pieces_is_held_back():
    splitter = ReplySplitter("thought")
    assert splitter.advance("Dig.\n</th") == ("Dig.", "")  # what may be the tag, and the newline before it
    assert splitter.advance("Dig.\n</think>\n\nUnder") == ("", "Under")
    either = ReplySplitter("either")
    assert either.advance("\n<thi") == ("", "")  # may be a thought starting
    assert either.advance("\n<think>\nDig") == ("Dig", "")


def test_thought_tokens_are_counted_with_their_tags():
    tokens = ["<think>", "\n", "Dig", ".", "\n", "</think>", "\n\n", "Palm", "."]
    splitter, text = ReplySplitter("either"), ""
    for token in tokens:
        text += token
        splitter.token(text)
    assert splitter.thought_tokens == 6 and not splitter.thinking
    opened = ReplySplitter("thought")
    assert opened.thinking  # before its first token: a grammar waits for the answer
    opened.token("Dig")
    assert opened.thought_tokens == 1 and opened.thinking
    answer = ReplySplitter("either")
    answer.token("Palm")
    assert answer.thought_tokens == 0


def _prompt(template: str, **variables) -> str:
    return render_jinja_template([ASK], chat_template=template, add_generation_prompt=True, **variables)[0][0]


def test_the_real_templates_tell_where_a_reply_starts():
    qwen3 = lambda **kwargs: _prompt(QWEN3, **kwargs)  # noqa: E731
    assert qwen3().endswith("<|im_start|>assistant\n") and opening(qwen3()) == "either"
    off = qwen3(enable_thinking=False)
    assert off.endswith("<think>\n\n</think>\n\n") and opening(off) == "answer"
    # DeepSeek-R1 distills' (as published now): the prompt opens the thought, and closes it unless asked to think
    r1 = lambda **kwargs: _prompt(R1, bos_token="<s>", **kwargs)  # noqa: E731
    assert r1(enable_thinking=True).endswith("<think>\n") and opening(r1(enable_thinking=True)) == "thought"
    assert r1().endswith("<think>\n</think>") and opening(r1()) == "answer"
    assert thinks(QWEN3) and thinks(R1)
    assert not thinks((TEMPLATES / "Qwen-Qwen2.5-7B-Instruct.jinja").read_text())
    assert not thinks((TEMPLATES / "meta-llama-Llama-3.1-8B-Instruct.jinja").read_text())


# ---------------------------------------------------------------------------------------------
# through the API, with an engine that thinks


class ThinkingEngine:
    """Answers with a thought, in two pieces (as an engine streams them), and keeps the prompt."""

    def __init__(self, pieces: list[Chunk]):
        self.pieces = pieces

    def context_length(self, model):
        return 8192

    def count_prompt_tokens(self, model, prompt):
        self.prompt = prompt
        return 7

    def generate(self, model, prompt, params):
        yield from self.pieces


THOUGHT_CALL = '<tool_call>\n{"name": "dig", "arguments": {}}\n</tool_call>'
WEATHER = {"type": "function", "function": {"name": "dig", "parameters": {"type": "object"}}}


@pytest.fixture
def api(tmp_path):
    settings = Settings(data_dir=tmp_path)
    register_base(Database(settings), BUNDLED_MODEL)  # a name only: no weights
    app = create_app(settings, run_worker=False)
    app.state.chat.engine = ThinkingEngine(
        [
            Chunk("", reasoning=f"Should I {THOUGHT_CALL}?"),  # a call thought of is no call made
            Chunk("Under the palm."),
            Chunk("", "stop", 7, 12, reasoning_tokens=9),
        ]
    )
    return in_process_client(app), app.state.chat.engine


def test_the_thought_comes_apart_from_the_answer(api):
    client, _ = api
    completion = client.chat.completions.create(model="gpt-3.5-turbo", messages=ASK, tools=[WEATHER])
    message = completion.choices[0].message
    assert (message.content, message.tool_calls, completion.choices[0].finish_reason) == (
        "Under the palm.",
        None,
        "stop",
    )
    assert message.reasoning_content == f"Should I {THOUGHT_CALL}?"
    assert completion.usage.completion_tokens_details.reasoning_tokens == 9

    chunks = list(
        client.chat.completions.create(
            model="gpt-3.5-turbo", messages=ASK, stream=True, stream_options={"include_usage": True}
        )
    )
    deltas = [chunk.choices[0].delta for chunk in chunks if chunk.choices]
    assert "".join(getattr(d, "reasoning_content", None) or "" for d in deltas) == message.reasoning_content
    assert "".join(d.content or "" for d in deltas) == "Under the palm."
    assert chunks[-1].usage.completion_tokens_details.reasoning_tokens == 9


def test_reasoning_effort_and_template_kwargs_reach_the_template(api):
    client, engine = api

    def template_kwargs(messages=ASK, **request):
        client.chat.completions.create(model="gpt-3.5-turbo", messages=messages, **request)
        return engine.prompt.template_kwargs

    assert template_kwargs() == {}
    assert template_kwargs(reasoning_effort="none") == {"enable_thinking": False}
    assert template_kwargs(reasoning_effort="minimal") == {"enable_thinking": False}
    assert template_kwargs(reasoning_effort="high") == {"enable_thinking": True}
    switch = {"chat_template_kwargs": {"enable_thinking": False, "custom": [1]}}
    assert template_kwargs(extra_body=switch) == {"enable_thinking": False, "custom": [1]}
    # a reply held to a grammar is asked without a thought, unless the request says otherwise
    json_reply = {"type": "json_object"}
    json_ask = [{"role": "user", "content": "Answer in JSON."}]
    assert template_kwargs(response_format=json_reply, messages=json_ask) == {"enable_thinking": False}
    assert template_kwargs(response_format=json_reply, messages=json_ask, reasoning_effort="low") == {
        "enable_thinking": True
    }


@pytest.mark.parametrize(
    ("request_fields", "param"),
    [
        ({"reasoning_effort": "extreme"}, "reasoning_effort"),
        ({"extra_body": {"chat_template_kwargs": {"enable_thinking": "no"}}}, "chat_template_kwargs.enable_thinking"),
        ({"extra_body": {"chat_template_kwargs": {"tokenize": False}}}, "chat_template_kwargs.tokenize"),
        (
            {"reasoning_effort": "none", "extra_body": {"chat_template_kwargs": {"enable_thinking": True}}},
            "reasoning_effort",
        ),
    ],
)
def test_bad_switches_are_400_naming_them(api, request_fields, param):
    client, _ = api
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="gpt-3.5-turbo", messages=ASK, **request_fields)
    assert caught.value.body["param"] == param, json.dumps(caught.value.body)


# ---------------------------------------------------------------------------------------------
# a row of the engine: the split as it streams, and a grammar that waits for the thought to end


class ThinkingBase:
    """What a Row reads of a loaded base (local.LoadedBase), for the bundled tokenizer with
    Qwen3's think tokens, whose prompt opened a thought (as R1 distills' do when thinking)."""

    def __init__(self, tokenizer):
        from openft.inference.grammar import Grammars

        self.tokenizer, self.context_length, self.device = tokenizer, 4096, torch.device("cpu")
        self.stop_ids = {tokenizer.convert_tokens_to_ids("<|im_end|>")}
        self.grammars = Grammars(tokenizer, len(tokenizer), self.stop_ids)
        self.thinks = True

    def reply_opening(self, prompt_ids):
        return "thought"


@pytest.fixture(scope="module")
def think_tokenizer(model_store):
    """The bundled tokenizer with Qwen3's think tokens (added, not special: decoding keeps them)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_store / BUNDLED_MODEL)
    tokenizer.add_tokens(["<think>", "</think>"])
    return tokenizer


def test_blanks_after_a_closed_thought_are_tokenized_as_the_trainer_saw_them(think_tokenizer):
    tokenizer = think_tokenizer
    prompt = "<|im_start|>assistant\n<think>\n\n</think>\n\n"  # Qwen3's, thinking off
    trained = tokenizer.encode(prompt + "Ahoy")  # the empty thought is the start of the trained reply
    before_the_answer = trained[: len(trained) - len(tokenizer.encode("Ahoy"))]
    assert tokenizer.encode(prompt) != before_the_answer  # `\n\n` whole at the end, `\n`, `\n` before a word
    assert tokenized_as_trained(tokenizer, tokenizer.encode(prompt)) == before_the_answer
    thinking_on = tokenizer.encode("<|im_start|>assistant\n")
    assert tokenized_as_trained(tokenizer, thinking_on) == thinking_on


def test_a_grammar_holds_the_answer_after_the_thought_the_prompt_opened(think_tokenizer):
    from openft.inference.constraints import json_grammar
    from openft.inference.engine import ModelRef, Prompt, SamplingParams
    from openft.inference.rows import Generation, Row

    tokenizer = think_tokenizer
    schema = {
        "type": "object",
        "properties": {"spot": {"const": "palm"}},
        "required": ["spot"],
        "additionalProperties": False,
    }
    params = SamplingParams(temperature=0, max_tokens=40, grammar=json_grammar(schema, strict=False))
    generation = Generation(ModelRef("base"), Prompt(ASK), params)
    row = Row(generation, ThinkingBase(tokenizer), [1, 2, 3])
    # the model wants to say "Dig" twice, then close its thought, then anything the grammar allows
    thought = [*tokenizer.encode(" Dig Dig"), tokenizer.convert_tokens_to_ids("</think>")]
    wanted = list(thought)
    while not row.done:
        logits = torch.zeros(len(tokenizer))
        if wanted:
            logits[wanted.pop(0)] = 10.0
        row.step(logits)
    chunks = list(generation.stream())
    assert "".join(c.reasoning for c in chunks) == " Dig Dig"  # free: the grammar would have refused it
    assert json.loads("".join(c.text for c in chunks)) == {"spot": "palm"}
    assert chunks[-1].finish_reason == "stop" and chunks[-1].reasoning_tokens == len(thought)
