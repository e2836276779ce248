"""The arms of an eval and the exact messages each one sends.

A held-out example is a chat whose last message is the assistant's reference answer; the
messages before it are the prompt. A DPO file's pair is its input followed by the preferred
output (`as_chats`), the non-preferred output kept next to it for the `preferred_rate` score.
Every arm sends the prompt's user/assistant turns; they
differ in the model and in what comes before those turns:

1. `base_zero_shot`: the base model, with the system message;
2. `base_few_shot`: the base model, with the system message and K training examples as chat
   turns (the prompting baseline a fine-tune must beat, and the long prompt it saves);
3. `fine_tuned`: the fine-tuned model, with the system message;
4. `fine_tuned_no_system`: the fine-tuned model with no system message at all (OpenAI's guide:
   did the behaviour move into the weights, or does it still need the instructions?);
5. `fine_tuned_constrained`, on JSON tasks only: arm 3 with its reply held to the task's schema
   (structured outputs): next to arm 3, what the fine-tune learned on its own and what the
   constraint adds.

"The system message" is the held-out example's own, when it has one (that is what production
sends), else the one the training file uses most (what the model was trained with).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from openft.data.chat_format import content_text
from openft.data.preference import preference_chats


@dataclass(frozen=True)
class Arm:
    name: str
    title: str
    fine_tuned: bool  # which model: the fine-tune, or the base it was trained from
    system_message: bool
    few_shot: bool
    constrained: bool = False  # the reply held to the task's JSON schema


ARMS = (
    Arm("base_zero_shot", "Base, zero-shot, system message", fine_tuned=False, system_message=True, few_shot=False),
    Arm("base_few_shot", "Base, few-shot, system message", fine_tuned=False, system_message=True, few_shot=True),
    Arm("fine_tuned", "Fine-tuned, system message", fine_tuned=True, system_message=True, few_shot=False),
    Arm("fine_tuned_no_system", "Fine-tuned, no system message", fine_tuned=True, system_message=False, few_shot=False),
    Arm(
        "fine_tuned_constrained",
        "Fine-tuned, constrained to the schema",
        fine_tuned=True,
        system_message=True,
        few_shot=False,
        constrained=True,
    ),
)


@dataclass(frozen=True)
class HeldOut:
    line: int  # in the held-out file, 1-based
    system: str | None  # the example's own system message
    turns: list[dict]  # the prompt's other messages, in order
    reference: str  # the last assistant message: the answer the arms are scored against
    rejected: str | None = None  # a DPO file's non-preferred output (the reference is the preferred)


class NoReference(ValueError):
    """A held-out example whose last message is not an assistant's: there is nothing to score."""

    def __init__(self, line: int):
        super().__init__(f"Line {line}: the last message must be the assistant's reference answer.")
        self.line = line


def as_chats(examples: list[dict], method: str | None) -> tuple[list[dict], list[str] | None]:
    """Valid examples of a file as chats, and for a DPO file its non-preferred outputs' texts."""
    if method != "dpo":
        return examples, None
    chats = [preference_chats(example)[0] for example in examples]
    return chats, [content_text(example["non_preferred_output"][0].get("content")) for example in examples]


def held_out_examples(examples: list[dict], lines: list[int], rejected: list[str] | None = None) -> list[HeldOut]:
    """Split valid chat examples (as `validate_chat_jsonl` returns them, DPO ones `as_chats`) into
    prompt and reference."""
    held_out = []
    for n, (example, line) in enumerate(zip(examples, lines, strict=True)):
        messages = [_plain(message) for message in example["messages"]]
        if messages[-1]["role"] != "assistant" or not messages[-1].get("content"):
            raise NoReference(line)
        prompt = messages[:-1]
        systems = [m["content"] for m in prompt if m["role"] in ("system", "developer")]
        turns = [m for m in prompt if m["role"] not in ("system", "developer")]
        other = rejected[n] if rejected else None
        held_out.append(HeldOut(line, systems[0] if systems else None, turns, messages[-1]["content"], other))
    return held_out


def training_system_message(examples: list[dict]) -> str | None:
    """The system message the training file uses most (the first of equals); None if it has none."""
    found = Counter()
    for example in examples:
        system = next(
            (content_text(m["content"]) for m in example["messages"] if m["role"] in ("system", "developer")), None
        )
        if system is not None:
            found[system] += 1
    return found.most_common(1)[0][0] if found else None


def few_shot_turns(examples: list[dict], shots: int) -> list[dict]:
    """The first `shots` training examples as alternating chat turns, their system messages left
    out (the arm sends one of its own, once)."""
    turns = []
    for example in examples[:shots]:
        turns += [_plain(m) for m in example["messages"] if m["role"] not in ("system", "developer")]
    return turns


def arm_messages(arm: Arm, example: HeldOut, system: str | None, shots: list[dict]) -> list[dict]:
    """What `arm` sends for `example`: `system` is the training file's system message, used when
    the example has none; `shots` the few-shot turns."""
    messages = []
    system = example.system if example.system is not None else system
    if arm.system_message and system is not None:
        messages.append({"role": "system", "content": system})
    if arm.few_shot:
        messages += shots
    return messages + example.turns


def _plain(message: dict) -> dict:
    """The message as a chat request carries it: without the training-only `weight`, text as text."""
    plain = {key: value for key, value in message.items() if key != "weight"}
    if "content" in plain and plain["content"] is not None:
        plain["content"] = content_text(plain["content"])
    return plain
