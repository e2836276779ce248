"""A reasoning model's reply in two parts, its thought and its answer, as vLLM's reasoning parsers
(qwen3, deepseek_r1) split it and OpenAI-compatible servers send it (`reasoning_content` apart
from `content`). Torch-free: both engines (rows.py, vllm.py) split their replies with it.

A base thinks when its chat template writes `</think>` (Qwen3's, DeepSeek-R1 distills'): read
from the template when the engine loads the base, never from the model's name. Where its reply
starts is read from the end of the prompt it is given:

- the prompt opened a thought (ends with `<think>`, as DeepSeek-R1 distills' do): the reply is
  thought until it writes `</think>`;
- it closed one (ends with `</think>`, as Qwen3's does with `enable_thinking` false): the reply
  is all answer;
- neither (Qwen3's with thinking on, where the model writes `<think>` itself): a reply whose first
  text past blanks is `<think>` thinks; any other is all answer.

A thought never closed (max_tokens cut it short) is all reasoning. The newlines the templates put
around each part (`<think>\\n…\\n</think>\\n\\n`) belong to neither: the reasoning is stripped of
those at both ends, the answer of those at its start, which is how Qwen3's template reads a reply
back (`reasoning_content.strip('\\n')`, `content.lstrip('\\n')`), so a reply sent back in a
conversation renders as it was generated. An empty thought (`<think>\\n\\n</think>`) is no
reasoning.

A prompt that closed the thought (thinking off) ends with the blanks after `</think>`, which a
tokenizer cuts differently at the end of a text than before a word: Qwen3's and GPT-2's split
`\n\n` into `\n`, `\n` before a word and keep it whole at the end. The trainer saw them before
the answer's first word (the empty thought is part of the trained reply: labels.py), so that is
how the prompt's are tokenized (`tokenized_as_trained`); else a fine-tune, asked with thinking off,
meets a token it was never trained after.

Streamed, a reply is split again each time it grows; what could still turn out to be a tag (a
trailing `</thi`, a reply that so far is `<th`) or a newline a tag may follow is held back until
the next text decides it. What a stream sends is therefore exactly what the whole reply splits into.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

THINK, END = "<think>", "</think>"
PROMPT_TAIL_TOKENS = 8  # enough to end with `<think>\n` or `</think>\n\n`, whatever the tokenizer
Opening = Literal["thought", "answer", "either"]


def thinks(chat_template) -> bool:
    """Whether a model with this chat template (a tokenizer's: text, or named texts) thinks."""
    return END in str(chat_template or "")


def opening(prompt_tail: str) -> Opening:
    """Where a reply to a prompt ending with `prompt_tail` (its last tokens' text) starts."""
    tail = prompt_tail.rstrip()
    if tail.endswith(THINK):
        return "thought"
    if tail.endswith(END):
        return "answer"
    return "either"


@dataclass(frozen=True)
class Parts:
    reasoning: str
    answer: str
    opened: bool = False  # the reply has a thought (opened by the prompt or by the reply)
    open: bool = False  # ... that the text so far has not closed


def split(text: str, start: Opening, final: bool = True) -> Parts:
    """`text`, a reply that starts at `start`, as its thought and its answer. Not `final`: the
    reply may go on, so a partial tag or a trailing newline that may precede one is held back."""
    if start == "answer":
        return Parts("", text)
    if start == "either":
        body = text.lstrip()
        if body.startswith(THINK):
            text = body[len(THINK) :]
        elif not final and THINK.startswith(body):
            return Parts("", "")  # blanks, or part of a `<think>`: undecided
        else:
            return Parts("", text)
    thought, closed, answer = text.partition(END)
    if closed:
        return Parts(thought.strip("\n"), answer.lstrip("\n"), opened=True)
    if not final:
        thought = thought[: len(thought) - _partial_tag(thought)]
    return Parts(thought.strip("\n"), "", opened=True, open=True)


def _partial_tag(text: str) -> int:
    """The length of the longest end of `text` that begins `</think>` (0 if none)."""
    return next((n for n in range(min(len(END) - 1, len(text)), 0, -1) if END.startswith(text[-n:])), 0)


def tokenized_as_trained(tokenizer, ids: list[int]) -> list[int]:
    """`ids`, a prompt, with the blanks after a `</think>` among its last tokens tokenized as they
    are before a word (see the module docstring); unchanged when there is none, or when the
    tokenizer would merge the word with the blanks."""
    end = tokenizer.convert_tokens_to_ids(END)
    tail = ids[-PROMPT_TAIL_TOKENS:]
    if end not in tail or tokenizer.convert_ids_to_tokens(end) != END:
        return ids
    at = len(ids) - tail[::-1].index(end)
    blanks = tokenizer.decode(ids[at:])
    probe = tokenizer.encode(blanks + "x", add_special_tokens=False)
    if tokenizer.decode(probe[-1:]) != "x" or tokenizer.decode(probe[:-1]) != blanks:
        return ids
    return ids[:at] + probe[:-1]


class ReplySplitter:
    """One reply's thought and answer as it grows: each call gets the reply so far and returns
    the reasoning and answer text not returned before. Also counts the reply's thought tokens
    (OpenAI's `reasoning_tokens`: the tags included) when told of each token."""

    def __init__(self, start: Opening):
        self.start = start
        self.sent = Parts("", "")
        self.thinking = start == "thought"  # the next token is part of a thought
        self.thought_tokens = 0

    def advance(self, text: str, final: bool = False) -> tuple[str, str]:
        parts = split(text, self.start, final)
        new = parts.reasoning[len(self.sent.reasoning) :], parts.answer[len(self.sent.answer) :]
        self.sent = parts
        return new

    def token(self, text: str, count: int = 1) -> None:
        """`count` more tokens (one, or a stream's delta), the reply now being `text`."""
        parts = split(text, self.start, final=False)
        if parts.opened and (self.thinking or parts.open):
            self.thought_tokens += count
        self.thinking = parts.open
