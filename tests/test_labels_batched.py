"""The batched label path (`render_examples`, `render_stream`) against the one-at-a-time one.

`reference_render_example` is `render_example` as it was before batching, kept here verbatim as
the oracle: one `apply_chat_template` call per rendering, one tokenizer call per example and a
walk over every token. The batched path must give the very same token ids, labels and
truncation on a varied sample: tools (rendered by openft and natively by the template), legacy
functions, weights, multi-turn chats, content parts, no system message, non-ASCII text,
whitespace at the ends of replies and examples over the context.
"""

import json
import random

import pytest

from openft.data.chat_format import ChatTemplate
from openft.data.labels import IGNORE_INDEX, _labels, render_example, render_examples, render_stream
from openft.data.pieces import Encoding, _piece
from openft.settings import BUNDLED_MODEL

MAX_LENGTH = 160  # short enough that the long examples of the sample are truncated


@pytest.fixture(scope="module")
def tokenizer(model_store):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(model_store / BUNDLED_MODEL)


@pytest.fixture(scope="module")
def native_tools_tokenizer(model_store):
    """The bundled tokenizer with a template that renders tools and tool calls itself."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_store / BUNDLED_MODEL)
    tokenizer.chat_template = (
        "{% if tools %}<|im_start|>system\nTools: {{ tools | tojson }}<|im_end|>\n{% endif %}"
        "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}"
        "{% for call in m.tool_calls or [] %}<call>{{ call.function | tojson }}</call>{% endfor %}"
        "<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
    )
    return tokenizer


def reference_render_example(tokenizer, example: dict, max_length: int) -> tuple[list[int], list[int], bool]:
    """`render_example` before batching, verbatim but for the return type."""
    messages, tools = ChatTemplate(tokenizer).messages(example["messages"], _example_tools(example))
    text = _render(tokenizer, messages, tools)
    spans = []
    inserted = len(messages) - len(example["messages"])
    for j, raw in enumerate(example["messages"]):
        i = j + inserted
        if messages[i]["role"] != "assistant" or raw.get("weight", 1) == 0:
            continue
        if i == 0:
            raise ValueError("Cannot label an assistant message that opens the conversation")
        before = _render(tokenizer, messages[:i], tools, add_generation_prompt=True)
        upto = _render(tokenizer, messages[: i + 1], tools)
        if not upto.startswith(before) or not text.startswith(upto):
            raise ValueError(f"Cannot label message {j}")
        spans.append((len(before), max(len(before), len(upto.rstrip()))))

    encoding = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    input_ids = list(encoding["input_ids"])
    labels = [IGNORE_INDEX] * len(input_ids)
    k = 0
    for t, (start, end) in enumerate(encoding["offset_mapping"]):
        while k < len(spans) and spans[k][1] <= start:
            k += 1
        if k < len(spans) and start < spans[k][1] and end > spans[k][0]:
            labels[t] = input_ids[t]
    return input_ids[:max_length], labels[:max_length], len(input_ids) > max_length


def _example_tools(example):
    if example.get("tools"):
        return example["tools"]
    if example.get("functions"):
        return [{"type": "function", "function": f} for f in example["functions"]]
    return None


def _render(tokenizer, messages, tools, add_generation_prompt=False):
    return tokenizer.apply_chat_template(
        messages, tools=tools, tokenize=False, add_generation_prompt=add_generation_prompt
    )


def as_tuple(rendered) -> tuple[list[int], list[int], bool]:
    return rendered.input_ids, rendered.labels, rendered.truncated


# ---------------------------------------------------------------------------------------------
# a varied sample

WORDS = "the a of to and is it you that in Paris café naïve 東京 🙂 — { } [ ] <tag> x=1; 42 3.14 \\n".split()


def tool(name: str) -> dict:
    parameters = {"type": "object", "properties": {"city": {"type": "string"}}}
    return {
        "type": "function",
        "function": {"name": name, "description": f"{name} for a city", "parameters": parameters},
    }


def varied_examples(n: int = 120, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)

    def text(low: int, high: int) -> str:
        words = " ".join(rng.choices(WORDS, k=rng.randint(low, high)))
        return rng.choice(["", " ", "\n", "  "]) + words + rng.choice(["", " ", "\n", ".\n\n"])

    examples = []
    for k in range(n):
        kind = k % 6
        messages = [] if k % 4 == 0 else [{"role": "system", "content": text(1, 12)}]
        if kind in (0, 1, 2):  # chats of 1-3 turns, some replies at weight 0, some content as parts
            for turn in range(kind + 1):
                messages.append({"role": "user", "content": text(1, 30)})
                reply = {"role": "assistant", "content": text(0, 60 if k % 10 else 300)}
                if turn < kind and rng.random() < 0.5:
                    reply["weight"] = 0
                elif rng.random() < 0.3:
                    reply["weight"] = 1
                if rng.random() < 0.2:
                    reply["content"] = [{"type": "text", "text": reply["content"]}, {"type": "text", "text": "!"}]
                messages.append(reply)
            examples.append({"messages": messages})
        elif kind in (3, 4):  # tool calls, one or two tools, parallel calls
            tools = [tool("get_weather")] + ([tool("get_time")] if kind == 4 else [])
            messages.append({"role": "user", "content": text(1, 20)})
            calls = [
                {
                    "id": f"call_{k}_{c}",
                    "type": "function",
                    "function": {"name": tools[c]["function"]["name"], "arguments": json.dumps({"city": text(1, 2)})},
                }
                for c in range(len(tools))
            ]
            messages.append({"role": "assistant", "content": None if k % 3 else text(1, 5), "tool_calls": calls})
            messages += [{"role": "tool", "tool_call_id": call["id"], "content": text(1, 8)} for call in calls]
            messages.append({"role": "assistant", "content": text(1, 40), "weight": rng.choice([0, 1])})
            examples.append({"tools": tools, "messages": messages})
        else:  # legacy function calling
            messages.append({"role": "user", "content": text(1, 20)})
            messages.append(
                {"role": "assistant", "function_call": {"name": "get_weather", "arguments": '{"city": "Oslo"}'}}
            )
            messages.append({"role": "function", "name": "get_weather", "content": text(1, 8)})
            messages.append({"role": "assistant", "content": text(1, 40)})
            examples.append({"functions": [tool("get_weather")["function"]], "messages": messages})
    # an opening assistant message at weight 0 (the labels start after it) and an empty trained reply
    examples.append(
        {
            "messages": [
                {"role": "assistant", "content": "Hi", "weight": 0},
                {"role": "user", "content": "Hi"},
                {"role": "assistant", "content": "Yo"},
            ]
        }
    )
    examples.append({"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": ""}]})
    return examples


# ---------------------------------------------------------------------------------------------
# the same results


@pytest.mark.parametrize("template", ["bundled", "native_tools"])
def test_batched_rendering_equals_one_at_a_time(request, template):
    tokenizer = request.getfixturevalue("tokenizer" if template == "bundled" else "native_tools_tokenizer")
    sample = varied_examples()
    expected = [reference_render_example(tokenizer, example, MAX_LENGTH) for example in sample]

    assert [as_tuple(r) for r in render_examples(tokenizer, sample, MAX_LENGTH)] == expected
    assert [as_tuple(render_example(tokenizer, example, MAX_LENGTH)) for example in sample] == expected
    assert [as_tuple(r) for r in render_stream(tokenizer, sample, MAX_LENGTH, batch_size=7)] == expected
    # the sample covers what it claims
    assert any(truncated for _, _, truncated in expected) and not all(truncated for _, _, truncated in expected)
    assert all(any(label != IGNORE_INDEX for label in labels) for _, labels, truncated in expected if not truncated)


def test_trained_token_totals_match(tokenizer):
    sample = varied_examples(seed=1)
    expected = [reference_render_example(tokenizer, example, MAX_LENGTH) for example in sample]
    rendered = render_examples(tokenizer, sample, MAX_LENGTH)
    assert sum(len(r.labels) - r.labels.count(IGNORE_INDEX) for r in rendered) == sum(
        sum(label != IGNORE_INDEX for label in labels) for _, labels, _ in expected
    )


def test_stream_yields_the_error_in_place_of_an_example_that_cannot_be_rendered(tokenizer):
    good = varied_examples(n=5)
    opening = {"messages": [{"role": "assistant", "content": "Ahoy!"}]}  # a trained reply cannot open
    results = list(render_stream(tokenizer, good[:3] + [opening] + good[3:], MAX_LENGTH, batch_size=4))

    assert len(results) == len(good) + 1
    assert isinstance(results[3], ValueError) and "opens the conversation" in str(results[3])
    others = results[:3] + results[4:]
    assert [as_tuple(r) for r in others] == [reference_render_example(tokenizer, e, MAX_LENGTH) for e in good]
    with pytest.raises(ValueError, match="opens the conversation"):
        render_examples(tokenizer, good + [opening], MAX_LENGTH)


# ---------------------------------------------------------------------------------------------
# the labelling rule, on offsets no tokenizer produced


def walk(input_ids, offsets, spans):
    labels, k = [IGNORE_INDEX] * len(input_ids), 0
    for t, (start, end) in enumerate(offsets):
        while k < len(spans) and spans[k][1] <= start:
            k += 1
        if k < len(spans) and start < spans[k][1] and end > spans[k][0]:
            labels[t] = input_ids[t]
    return labels


def test_labels_follow_the_walk_on_any_offsets():
    rng = random.Random(0)
    for _ in range(3000):
        n = rng.randint(0, 12)
        offsets = sorted((rng.randint(0, 30), rng.randint(0, 30)) for _ in range(n))
        offsets = [(s, max(s, e)) if rng.random() < 0.9 else (s, e) for s, e in offsets]
        if rng.random() < 0.2:
            rng.shuffle(offsets)  # out of order: the walk itself decides
        spans = [tuple(sorted((rng.randint(0, 30), rng.randint(0, 30)))) for _ in range(rng.randint(0, 3))]
        if rng.random() < 0.7:
            spans.sort(key=lambda span: span[1])
        ids = list(range(100, 100 + n))
        assert _labels(one_piece(ids, offsets), spans) == walk(ids, offsets, spans), (offsets, spans)


def test_labels_follow_the_walk_across_pieces():
    """Tokens cut into pieces (as at special tokens) are labelled as if the text were whole."""
    rng = random.Random(1)
    for _ in range(3000):
        offsets, at = [], 0
        for _ in range(rng.randint(1, 12)):
            offsets.append((at, at + rng.randint(1, 4)))
            at = offsets[-1][1]
        cuts = sorted(rng.sample(range(1, len(offsets)), k=rng.randint(0, len(offsets) - 1)))
        spans = sorted(
            (tuple(sorted((rng.randint(0, at + 2), rng.randint(0, at + 2)))) for _ in range(rng.randint(0, 3))),
            key=lambda span: span[1],
        )
        ids = list(range(100, 100 + len(offsets)))
        assert _labels(pieces(ids, offsets, cuts), spans) == walk(ids, offsets, spans), (offsets, cuts, spans)


def one_piece(ids, offsets) -> Encoding:
    return Encoding(ids, [0], [0], [_piece(ids, offsets)])


def pieces(ids, offsets, cuts) -> Encoding:
    """`ids` cut into pieces before the tokens at `cuts`, each piece's offsets made its own."""
    bounds = [0, *cuts, len(ids)]
    chars = [0] + [offsets[cut][0] for cut in cuts]
    parts = [
        _piece(ids[a:b], [(s - at, e - at) for s, e in offsets[a:b]]) for a, b, at in zip(bounds, bounds[1:], chars)
    ]
    return Encoding(ids, chars, bounds[:-1], parts)
