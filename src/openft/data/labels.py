"""Chat example → token ids + loss labels: the one label-building code path.

The trainer calls `render_example`; `openft data check` calls its batched forms
`render_examples` and `render_stream`, which are the same steps over many examples at once
(`render_example` is `render_examples` of one). So what a user is shown and counted is exactly
what the model is trained on.

The messages are first normalised as inference normalises them (`chat_format.py`: content parts
as text, legacy function calling as tools, tools and tool calls written into the text when the
template ignores them), so a fine-tune is trained on what it will be asked.

How the labels are found. The conversation is rendered to text with the model's own chat
template, once in full. For each assistant message i that carries loss (weight 1, the default),

    before = render(messages[:i], add_generation_prompt=True)   # ends with the role header
    upto   = render(messages[:i + 1])                            # ends after the reply's end-of-turn

and the trained characters are `upto[len(before):]` with trailing whitespace stripped: the
reply's content and its end-of-turn token (`<|im_end|>` in ChatML, so the model learns to
stop), but not the role header and not the newline after the end-of-turn. A template for
which `before` is not a prefix of `upto`, or `upto` not a prefix of the full text (for example
one that rewrites earlier turns), cannot be labelled this way and raises ValueError.

The full text is tokenized once with offsets; a token is trained when its characters overlap a
trained span (a token that straddles the header/content boundary is trained, since the model
must learn to produce it). Labels are the token ids themselves, unshifted, -100 elsewhere:

    text    <|im_start|>assistant\\n  Ah  oy  !  <|im_end|>  \\n
    labels  -100        -100 -100  Ah  oy  !  <|im_end|> -100

Examples longer than `max_length` tokens keep their start and are marked `truncated`.
"""

from __future__ import annotations

import itertools
import json
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from operator import le

from openft.data.chat_format import ChatTemplate, chat_tools
from openft.data.pieces import Encoding, PieceEncoder

IGNORE_INDEX = -100


class TurnsRewritten(ValueError):
    """The chat template renders a conversation otherwise than as its earlier turns followed by
    the new one (Mistral v0.3's moves the system message into the last user turn)."""


@dataclass
class RenderedExample:
    input_ids: list[int]
    labels: list[int]  # the token id where loss is taken, -100 elsewhere (unshifted)
    truncated: bool  # the rendered example was longer than max_length and lost its end


def render_example(tokenizer, example: dict, max_length: int) -> RenderedExample:
    """Render one chat example and label its trained assistant replies (see module docstring)."""
    return render_examples(tokenizer, [example], max_length)[0]


def render_examples(tokenizer, examples: list[dict], max_length: int) -> list[RenderedExample]:
    """`render_example` for many examples at once: the same results, in a fraction of the time.

    Every rendering the labels need (whole conversations; prefixes with and without the generation
    prompt) is collected first and rendered by one chat-template call per kind (and per set of
    tools the template renders natively); a prefix that ends with the last message is the whole
    conversation, so it is not rendered twice. All the texts are then tokenized in one batched
    call, which the fast tokenizer spreads over the CPU cores, and each span's tokens are found by
    bisection rather than by a walk over every token. If any example cannot be rendered or
    labelled, this raises for the whole batch: `render_example` on each says which one.
    """
    return _tokenize(PieceEncoder.for_tokenizer(tokenizer), *_render_texts(tokenizer, examples), max_length)


def render_stream(
    tokenizer, examples: Iterable[dict], max_length: int, batch_size: int = 256
) -> Iterator[RenderedExample | Exception]:
    """`render_example` of each of `examples` in turn, or the exception it raised: for a file of
    any size, in bounded memory.

    Batches of `batch_size` take `render_examples`' two steps in a pipeline: while a second thread
    tokenizes one batch (the fast tokenizer runs outside the GIL, on every core), this one renders
    the next. A batch in which some example fails is rendered one example at a time.
    """
    examples = iter(examples)
    encoder = PieceEncoder.for_tokenizer(tokenizer)
    with ThreadPoolExecutor(max_workers=1) as tokenizing:
        in_flight: deque[tuple[dict[int, Exception], Future]] = deque()
        while batch := list(itertools.islice(examples, batch_size)):
            failed: dict[int, Exception] = {}  # position in the batch -> what rendering it raised
            try:
                texts, spans = _render_texts(tokenizer, batch)
            except Exception:  # a template may raise anything (jinja2's TemplateError, ValueError…)
                texts, spans = [], []
                for n, example in enumerate(batch):
                    try:
                        text, example_spans = _render_texts(tokenizer, [example])
                    except Exception as e:
                        failed[n] = e
                        continue
                    texts += text
                    spans += example_spans
            in_flight.append((failed, tokenizing.submit(_tokenize, encoder, texts, spans, max_length)))
            if len(in_flight) > 1:
                yield from _merge(*in_flight.popleft())
        while in_flight:
            yield from _merge(*in_flight.popleft())


def _merge(failed: dict[int, Exception], tokenizing: Future) -> Iterator[RenderedExample | Exception]:
    rendered = tokenizing.result()
    tokenized = iter(rendered)
    for n in range(len(failed) + len(rendered)):
        yield failed[n] if n in failed else next(tokenized)


def _render_texts(tokenizer, examples: list[dict]) -> tuple[list[str], list[list[tuple[int, int]]]]:
    """Each example's whole text, and the (start, end) character spans in it that carry loss."""
    template = ChatTemplate.of(tokenizer)
    batches: dict[tuple[str | None, bool], list[list[dict]]] = {}  # (tools, generation prompt) -> conversations
    tool_sets: dict[str | None, list[dict] | None] = {}

    def to_render(messages: list[dict], tools_key: str | None, add_generation_prompt: bool = False) -> tuple:
        batch = batches.setdefault((tools_key, add_generation_prompt), [])
        batch.append(messages)
        return tools_key, add_generation_prompt, len(batch) - 1

    plans = []  # per example: where its whole text will be, and (j, before, upto) for each trained reply
    for example in examples:
        messages, tools = template.messages(
            example["messages"], chat_tools(example.get("tools"), example.get("functions"))
        )
        tools_key = json.dumps(tools) if tools else None
        tool_sets[tools_key] = tools
        whole = to_render(messages, tools_key)
        # Normalising maps assistant messages one to one (system ones may be inserted or folded).
        assistants = iter([i for i, m in enumerate(messages) if m["role"] == "assistant"])
        replies = []
        for j, raw in enumerate(example["messages"]):
            if raw["role"] != "assistant":
                continue
            i = next(assistants)
            if raw.get("weight", 1) == 0:
                continue
            if i == 0:
                raise ValueError(
                    "Cannot label an assistant message that opens the conversation: "
                    "start the example with a system or user message, or give it weight 0."
                )
            before = to_render(messages[:i], tools_key, add_generation_prompt=True)
            upto = to_render(messages[: i + 1], tools_key) if i + 1 < len(messages) else None
            replies.append((j, before, upto))
        plans.append((whole, replies))

    rendered = {
        (tools_key, generation): template.render_many(conversations, tool_sets[tools_key], generation)
        for (tools_key, generation), conversations in batches.items()
    }
    texts, all_spans = [], []
    for (tools_key, generation, n), replies in plans:
        text = rendered[tools_key, generation][n]
        spans = []
        for j, (b_tools, b_generation, b), upto_at in replies:
            before = rendered[b_tools, b_generation][b]
            upto = text if upto_at is None else rendered[upto_at[0], upto_at[1]][upto_at[2]]
            upto = upto.removesuffix(template.conversation_end)  # the end of a conversation is no turn's
            if not upto.startswith(before) or not text.startswith(upto):
                raise TurnsRewritten(
                    f"Cannot label message {j}: the chat template does not render the "
                    "conversation as a sequence of prefixes (rendering messages[:i] with "
                    "add_generation_prompt=True must be a prefix of rendering messages[:i+1], and "
                    "that a prefix of the whole conversation)."
                )
            spans.append((len(before), max(len(before), len(upto.rstrip()))))
        texts.append(text)
        all_spans.append(spans)
    return texts, all_spans


def _tokenize(
    encoder: PieceEncoder, texts: list[str], spans: list[list[tuple[int, int]]], max_length: int
) -> list[RenderedExample]:
    """Tokenize the texts in one batched call and label the tokens that overlap their spans."""
    rendered = []
    for encoding, example_spans in zip(encoder.encode(texts), spans):
        labels = _labels(encoding, example_spans)
        input_ids = encoding.ids
        rendered.append(RenderedExample(input_ids[:max_length], labels[:max_length], len(input_ids) > max_length))
    return rendered


def _labels(encoding: Encoding, spans: list[tuple[int, int]]) -> list[int]:
    """Each token's id where its characters overlap a trained span, -100 elsewhere.

    The rule is the walk at the end: spans and tokens are both in text order, so walk them
    together. The bisections before it give the same labels without a Python step per token:
    when token starts, token ends and span ends are each in ascending order (as fast tokenizers
    and prefix-rendering templates give them), the tokens the walk meets while at span k are
    those starting in [end of span k-1, end of span k), and of those it trains the ones that
    end after span k starts.
    """
    input_ids = encoding.ids
    labels = [IGNORE_INDEX] * len(input_ids)
    if not spans or not input_ids:
        return labels
    span_ends = [end for _, end in spans]
    if encoding.ascending and all(map(le, span_ends, span_ends[1:])):
        previous_end = None
        for span_start, span_end in spans:
            first = 0 if previous_end is None else encoding.first_starting_at(previous_end)
            first = max(first, encoding.first_ending_after(span_start))
            last = encoding.first_starting_at(span_end)
            labels[first:last] = input_ids[first:last]
            previous_end = span_end
        return labels
    k = 0
    for t, (start, end) in enumerate(encoding.offsets()):
        while k < len(spans) and spans[k][1] <= start:
            k += 1
        if k < len(spans) and start < spans[k][1] and end > spans[k][0]:
            labels[t] = input_ids[t]
    return labels


# ---------------------------------------------------------------------------------------------
# can this template be labelled? (asked once, when a model is added)

PROBE_CHAT = {
    "messages": [
        {"role": "system", "content": "You answer in one word."},
        {"role": "user", "content": "Name a colour."},
        {"role": "assistant", "content": "Blue."},
        {"role": "user", "content": "Another one?"},
        {"role": "assistant", "content": "Green."},
    ]
}


def probe_template(tokenizer) -> list[str]:
    """Label a system message and two turns with the tokenizer's chat template, as training
    would. Raises (ValueError, or the template's own error) when it cannot be labelled, or when
    the labels would train anything but the two replies; returns warnings: the prompt that
    inference sends is not tokenized as the same text is in training (a generation prompt that
    ends where the tokenizer would merge it with the reply, like a trailing space)."""
    rendered = render_example(tokenizer, PROBE_CHAT, max_length=1024)
    trained = tokenizer.decode([i for i, label in zip(rendered.input_ids, rendered.labels) if label != IGNORE_INDEX])
    for message in PROBE_CHAT["messages"]:
        if (message["content"] in trained) != (message["role"] == "assistant"):
            what = "does not train" if message["role"] == "assistant" else "trains"
            raise ValueError(f"the labels {what} the {message['role']} message {message['content']!r}")
    prompt = ChatTemplate.of(tokenizer).prompt_ids(PROBE_CHAT["messages"][:-1])
    if rendered.input_ids[: len(prompt)] != prompt:
        tail = tokenizer.convert_ids_to_tokens(prompt[-2:])
        return [
            f"the prompt at inference ends in tokens {tail} that training splits differently, where the "
            "generation prompt meets the reply: answers may start less well than training shows"
        ]
    return []
