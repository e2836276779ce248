"""Chat example → token ids + loss labels: the one label-building code path.

The trainer calls `render_example`; `openft data check` calls its batched forms
`render_examples` and `render_stream`, which are the same steps over many examples at once
(`render_example` is `render_examples` of one). So what a user is shown and counted is exactly
what the model is trained on.

The messages are first normalised as inference normalises them (`chat_format.py`: content parts
as text, legacy function calling as tools, tools and tool calls written into the text when the
template ignores them), so a fine-tune is trained on what it will be asked.

How the labels are found. For each assistant message i that carries loss (weight 1, the
default), the model's own chat template renders

    before = render(messages[:i], add_generation_prompt=True)   # the prompt inference sends
    upto   = render(messages[:i + 1])                            # ends after the reply's end-of-turn

and the trained characters are `upto[len(before):]` with trailing whitespace stripped: the
reply's content and its end-of-turn token (`<|im_end|>` in ChatML, so the model learns to
stop), but not the role header and not the newline after the end-of-turn. When `before` is not
a prefix of `upto` because the generation prompt says more than the role header the template
writes before a reply (DeepSeek-R1 distills prompt with `<think>\n</think>`, and render replies
without it), the reply is what the template writes after the tokens the two share, trained after
`before`: the prompt inference sends. When the conversation before the reply renders otherwise
with the generation prompt than without it, the model cannot be taught to continue the prompt it
will be given: `ReplyNotAfterPrompt`, that template cannot be labelled.

Which texts are trained. Most templates render a conversation as its turns one after another,
so every `upto` is a prefix of the whole conversation, which is the one sequence trained.
Others render a turn differently once a later one follows: Qwen3 writes an empty
`<think>\n\n</think>\n\n` only into the assistant turn after the last user message, Mistral v0.3
puts the system message into the last user turn. A reply whose `upto` is not a prefix of the
whole conversation (nor of another sequence of the example) is trained on a sequence of its own,
`upto` itself: exactly what the model sees when it is asked at that turn. An example becomes
several sequences only where its template needs it.

Tokens, as inference has them. Each sequence is tokenized with a cut at the end of every
generation prompt it holds (`before` of each assistant turn, trained or not): no token crosses
from a prompt into its reply, and the tokens before a reply are exactly those
`ChatTemplate.prompt_ids` gives the server for that conversation, which cuts its prompt at the
same places. Tokenizing the whole text would merge, with some tokenizers, a prompt's last
characters with the reply's first ("\n\n" + "Hi" as "\n", "\nHi"), which the server, whose
prompt ends there, never feeds. A token is trained when its characters overlap a trained span.
Labels are the token ids themselves, unshifted, -100 elsewhere:

    text    <|im_start|>assistant\n  Ah  oy  !  <|im_end|>  \n
    labels  -100        -100 -100  Ah  oy  !  <|im_end|> -100

An example's sequences are joined into one `RenderedExample` (`sequence_starts` marks each; the
trainer runs each as a row of its own), so counts and prices add up over them. Each sequence
longer than `max_length` tokens keeps its start, and the example is marked `truncated`.
"""

from __future__ import annotations

import itertools
import json
import os
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from operator import le

from openft.data.chat_format import ChatTemplate, chat_tools
from openft.data.pieces import Encoding, PieceEncoder

IGNORE_INDEX = -100


class ReplyNotAfterPrompt(ValueError):
    """The chat template renders a reply otherwise than after the generation prompt of its turn,
    so no labels teach the model to continue the prompt it is given."""


@dataclass
class RenderedExample:
    input_ids: list[int]  # the example's sequences, one after another
    labels: list[int]  # the token id where loss is taken, -100 elsewhere (unshifted)
    truncated: bool  # a sequence was longer than max_length and lost its end
    sequence_starts: tuple[int, ...] = (0,)  # where each sequence begins in input_ids

    def sequences(self) -> list[tuple[list[int], list[int]]]:
        """(input_ids, labels) of each sequence: what the model is run on, one row each."""
        bounds = [*self.sequence_starts, len(self.input_ids)]
        return [(self.input_ids[a:b], self.labels[a:b]) for a, b in zip(bounds, bounds[1:])]


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
    return _tokenize(PieceEncoder.for_tokenizer(tokenizer), _render_texts(tokenizer, examples), max_length)


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
                sequences = _render_texts(tokenizer, batch)
            except Exception:  # a template may raise anything (jinja2's TemplateError, ValueError…)
                sequences = []
                for n, example in enumerate(batch):
                    try:
                        sequences += _render_texts(tokenizer, [example])
                    except Exception as e:
                        failed[n] = e
            in_flight.append((failed, tokenizing.submit(_tokenize, encoder, sequences, max_length)))
            if len(in_flight) > 1:
                yield from _merge(*in_flight.popleft())
        while in_flight:
            yield from _merge(*in_flight.popleft())


def _merge(failed: dict[int, Exception], tokenizing: Future) -> Iterator[RenderedExample | Exception]:
    rendered = tokenizing.result()
    tokenized = iter(rendered)
    for n in range(len(failed) + len(rendered)):
        yield failed[n] if n in failed else next(tokenized)


@dataclass
class _Sequence:
    """One text an example trains on: where to cut it for tokenizing, and its trained spans."""

    text: str
    cuts: list[int]  # where each generation prompt in the text ends (sorted)
    spans: list[tuple[int, int]]  # (start, end) characters of each trained reply


def _render_texts(tokenizer, examples: list[dict]) -> list[list[_Sequence]]:
    """Each example's sequences (see the module docstring)."""
    template = ChatTemplate.of(tokenizer)
    batches: dict[tuple[str | None, bool], list[list[dict]]] = {}  # (tools, generation prompt) -> conversations
    tool_sets: dict[str | None, list[dict] | None] = {}

    def to_render(messages: list[dict], tools_key: str | None, add_generation_prompt: bool = False) -> tuple:
        batch = batches.setdefault((tools_key, add_generation_prompt), [])
        batch.append(messages)
        return tools_key, add_generation_prompt, len(batch) - 1

    plans = []  # per example: its whole text, every assistant turn's prompt, and (j, i, upto) per trained reply
    for example in examples:
        messages, tools = template.messages(
            example["messages"], chat_tools(example.get("tools"), example.get("functions"))
        )
        tools_key = json.dumps(tools) if tools else None
        tool_sets[tools_key] = tools
        whole = to_render(messages, tools_key)
        # Normalising maps assistant messages one to one (system ones may be inserted or folded).
        assistants = [i for i, m in enumerate(messages) if m["role"] == "assistant"]
        prompts = {i: to_render(messages[:i], tools_key, add_generation_prompt=True) for i in assistants if i > 0}
        replies = []
        for j, i in zip((j for j, raw in enumerate(example["messages"]) if raw["role"] == "assistant"), assistants):
            if example["messages"][j].get("weight", 1) == 0:
                continue
            if i == 0:
                raise ValueError(
                    "Cannot label an assistant message that opens the conversation: "
                    "start the example with a system or user message, or give it weight 0."
                )
            upto = to_render(messages[: i + 1], tools_key) if i + 1 < len(messages) else None
            replies.append((j, i, upto))
        plans.append((whole, prompts, replies, messages, tools))

    rendered = {
        (tools_key, generation): template.render_many(conversations, tool_sets[tools_key], generation)
        for (tools_key, generation), conversations in batches.items()
    }
    text_at = lambda at: rendered[at[0], at[1]][at[2]]  # noqa: E731
    examples_sequences = []
    for whole, prompt_at, replies, messages, tools in plans:
        prompts = {i: text_at(at) for i, at in prompt_at.items()}
        sequences = [_Sequence(text_at(whole), [], [])]
        for j, i, upto_at in reversed(replies):  # the last reply first: it is most often the whole text's
            before = prompts[i]
            upto = sequences[0].text if upto_at is None else text_at(upto_at)
            upto = upto.removesuffix(template.conversation_end)  # the end of a conversation is no turn's
            if not upto.startswith(before):
                upto = before + _reply_after(template, before, upto, template.render(messages[:i], tools), j)
            sequence = next((s for s in sequences if s.text.startswith(upto)), None)
            if sequence is None:
                sequence = _Sequence(upto, [], [])
                sequences.append(sequence)
            sequence.spans.insert(0, (len(before), max(len(before), len(upto.rstrip()))))
        sequences = [s for s in sequences if s.spans] or sequences[:1]
        for sequence in sequences:
            sequence.spans.sort()
            sequence.cuts = sorted({len(p) for p in prompts.values() if sequence.text.startswith(p)})
        examples_sequences.append(sequences)
    return examples_sequences


def _reply_after(template: ChatTemplate, before: str, upto: str, history: str, j: int) -> str:
    """What the template writes for a reply after its role header, where its generation prompt
    says more than that header (DeepSeek-R1 distills prompt with `<think>\n</think>` and render
    a reply without it): the turn as rendered (`upto` past the conversation before it), less the
    tokens it shares with the generation prompt. Trained after `before`, the prompt the server
    feeds. ReplyNotAfterPrompt when the conversation before the reply renders otherwise with the
    generation prompt than without, or the two share no header."""
    tokenizer = template.tokenizer
    if before.startswith(history) and upto.startswith(history):
        prompt, turn = before[len(history) :], upto[len(history) :]
        prompt_ids = tokenizer(prompt, add_special_tokens=False).input_ids
        turn_tokens = tokenizer(turn, add_special_tokens=False, return_offsets_mapping=True)
        shared = len(os.path.commonprefix([prompt_ids, turn_tokens.input_ids]))
        if shared:
            return turn[turn_tokens.offset_mapping[shared - 1][1] :]
    raise ReplyNotAfterPrompt(
        f"Cannot label message {j}: the chat template renders the conversation before it otherwise "
        "with its generation prompt than without (rendering messages[:i] with add_generation_prompt="
        "True must extend rendering messages[:i], and share the reply's role header), so what the "
        "model would be trained to continue is not the prompt it is given at inference."
    )


def _tokenize(encoder: PieceEncoder, examples: list[list[_Sequence]], max_length: int) -> list[RenderedExample]:
    """Tokenize every sequence in one batched call, label the tokens that overlap their spans, and
    join each example's sequences."""
    flat = [sequence for sequences in examples for sequence in sequences]
    encodings = iter(encoder.encode([s.text for s in flat], [s.cuts for s in flat]))
    rendered = []
    for sequences in examples:
        input_ids, labels, starts, truncated = [], [], [], False
        for sequence in sequences:
            encoding = next(encodings)
            starts.append(len(input_ids))
            input_ids += encoding.ids[:max_length]
            labels += _labels(encoding, sequence.spans)[:max_length]
            truncated |= len(encoding.ids) > max_length
        rendered.append(RenderedExample(input_ids, labels, truncated, tuple(starts)))
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
    would. Raises (`ReplyNotAfterPrompt`, ValueError, or the template's own error) when it cannot
    be labelled, or when the labels would train anything but the two replies and their
    end-of-turn tokens; returns warnings: a template that renders an earlier turn differently
    once another follows trains a multi-turn example as a sequence per reply, which costs more
    tokens (each priced as trained)."""
    rendered = render_example(tokenizer, PROBE_CHAT, max_length=1024)
    trained = tokenizer.decode([i for i, label in zip(rendered.input_ids, rendered.labels) if label != IGNORE_INDEX])
    for message in PROBE_CHAT["messages"]:
        if (message["content"] in trained) != (message["role"] == "assistant"):
            what = "does not train" if message["role"] == "assistant" else "trains"
            raise ValueError(f"the labels {what} the {message['role']} message {message['content']!r}")
    if len(rendered.sequence_starts) > 1:
        return [
            "its chat template renders an earlier turn differently once another turn follows, so each "
            "reply of a multi-turn example is trained on its own sequence (the conversation up to that "
            "reply, as inference will prompt it): such examples cost more tokens"
        ]
    return []
