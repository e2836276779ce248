"""The oracle the batched label path is held to, and a varied sample of examples to hold it on.

`reference_render_example` is the label rule of `labels.py` written the plain way: one
`apply_chat_template` call per rendering, one tokenizer call per piece of text and a walk over
every token."""

import json
import random

from openft.data.chat_format import ChatTemplate
from openft.data.labels import IGNORE_INDEX


def reference_render_example(tokenizer, example: dict, max_length: int) -> tuple[list[int], list[int], bool]:
    """`render_example`'s (input_ids, labels, truncated), computed the plain way."""
    template = ChatTemplate(tokenizer)
    messages, tools = template.messages(example["messages"], _example_tools(example))
    prompts = {
        i: _render(tokenizer, messages[:i], tools, add_generation_prompt=True)
        for i, m in enumerate(messages)
        if m["role"] == "assistant" and i > 0
    }
    sequences = {_render(tokenizer, messages, tools): []}  # text -> trained spans
    inserted = len(messages) - len(example["messages"])
    for j in reversed(range(len(example["messages"]))):
        raw, i = example["messages"][j], j + inserted
        if messages[i]["role"] != "assistant" or raw.get("weight", 1) == 0:
            continue
        if i == 0:
            raise ValueError("Cannot label an assistant message that opens the conversation")
        before = prompts[i]
        upto = _render(tokenizer, messages[: i + 1], tools).removesuffix(template.conversation_end)
        if not upto.startswith(before):
            raise ValueError(f"Cannot label message {j}")
        text = next((text for text in sequences if text.startswith(upto)), upto)
        sequences.setdefault(text, []).insert(0, (len(before), max(len(before), len(upto.rstrip()))))
    trained = [(text, spans) for text, spans in sequences.items() if spans] or list(sequences.items())[:1]

    input_ids, labels, truncated = [], [], False
    for text, spans in trained:
        cuts = sorted({0, len(text), *(len(p) for p in prompts.values() if text.startswith(p))})
        ids, offsets = [], []
        for start, end in zip(cuts, cuts[1:]):
            encoding = tokenizer(text[start:end], add_special_tokens=False, return_offsets_mapping=True)
            ids += encoding["input_ids"]
            offsets += [(start + a, start + b) for a, b in encoding["offset_mapping"]]
        sequence_labels, k = [IGNORE_INDEX] * len(ids), 0
        for t, (start, end) in enumerate(offsets):
            while k < len(spans) and spans[k][1] <= start:
                k += 1
            if k < len(spans) and start < spans[k][1] and end > spans[k][0]:
                sequence_labels[t] = ids[t]
        input_ids += ids[:max_length]
        labels += sequence_labels[:max_length]
        truncated |= len(ids) > max_length
    return input_ids, labels, truncated


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
