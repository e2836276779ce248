"""The batched label path (`render_examples`, `render_stream`) against the one-at-a-time one.

`tests/reference_labels.reference_render_example` is `render_example` as it was before batching,
kept verbatim as the oracle. The batched path must give the very same token ids, labels and
truncation on a varied sample: tools (rendered by openft and natively by the template), legacy
functions, weights, multi-turn chats, content parts, no system message, non-ASCII text,
whitespace at the ends of replies and examples over the context.
"""

import random

import pytest

from openft.data.labels import IGNORE_INDEX, _labels, render_example, render_examples, render_stream
from openft.data.pieces import Encoding, _piece
from openft.settings import BUNDLED_MODEL
from tests.reference_labels import reference_render_example, varied_examples

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


def as_tuple(rendered) -> tuple[list[int], list[int], bool]:
    return rendered.input_ids, rendered.labels, rendered.truncated


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
