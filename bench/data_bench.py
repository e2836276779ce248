"""How fast is `openft data check`? Times its core on a generated 100k-example chat JSONL file.

The core is what the CLI does per file before it prices anything: stream and validate every
line (`openft.data.validate.iter_chat_jsonl`), then render every valid example with the real
tokenizer and chat template of the bundled model and count its tokens and trained tokens
(`openft.cli.data.check_file`). The ETA benchmark and the report printing are left out: they do
not grow with the file.

Two peers are timed in the same run, on the same file, so the ratios hold on any machine:

- floor: `json.loads` of every line, nothing else (no check, no tokenizer can beat it);
- naive: `render_example` called once per example (three or more chat-template renders and one
  tokenizer call each), on the first `--naive` examples, scaled up to the whole file.

The file is generated from a fixed seed, so every run checks the same bytes: single-turn
chats, multi-turn chats with some replies at weight 0, tool calls (with `tools`), legacy
`functions`, examples without a system message, content given as text parts, and a sprinkle of
bad lines (invalid JSON, a missing assistant reply) that are reported and skipped.

Example usage:

    .venv/bin/python bench/data_bench.py                  # 100k examples
    .venv/bin/python bench/data_bench.py --examples 20000 --naive 2000
    .venv/bin/python bench/data_bench.py --keep /tmp/bench.jsonl   # keep the generated file
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from pathlib import Path

# ---------------------------------------------------------------------------------------------
# the data

WORDS = (
    "the a of to and in is it you that he was for on are with as I his they be at one have this "
    "from or had by hot word but what some we can out other were all there when up use your how "
    "said an each she which do their time if will way about many then them write would like so "
    "these her long make thing see him two has look more day could go come did number sound no "
    "most people my over know water than call first who may down side been now find any new work "
    "part take get place made live where after back little only round man year came show every "
    "good me give our under name very through just form sentence great think say help low line "
    "differ turn cause much mean before move right boy old too same tell does set three want air "
    "well also play small end put home read hand port large spell add even land here must big "
    "high such follow act why ask men change went light kind off need house picture try us again "
    "animal point mother world near build self earth father head stand own page should country "
    "found answer school grow study still learn plant cover food sun four between state keep eye "
    "never last let thought city tree cross farm hard start might story saw far sea draw left "
    "late run don't while press close night real life few north Paris 42 3.14 2024 café naïve 東京 "
    "API JSON HTTP user_id getWeather(), x=1; {ok} [list] <tag> — … 🙂"
).split()
SYSTEMS = [
    "You are a helpful assistant.",
    "Marv is a factual chatbot that is also sarcastic.",
    "Answer in one short sentence.",
    "You are a support agent for a bicycle shop. Be polite and precise.",
]
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


def sentence(rng: random.Random, low: int, high: int) -> str:
    words = rng.choices(WORDS, k=rng.randint(low, high))
    return " ".join(words).capitalize() + rng.choice(".?!")


def chat_example(rng: random.Random) -> dict:
    kind = rng.random()
    messages = [] if kind < 0.1 else [{"role": "system", "content": rng.choice(SYSTEMS)}]
    if kind < 0.8:  # single or multi-turn chat
        for turn in range(1 if kind < 0.6 else rng.randint(2, 4)):
            messages.append({"role": "user", "content": sentence(rng, 4, 40)})
            reply = {"role": "assistant", "content": sentence(rng, 2, 80)}
            if turn > 0 and rng.random() < 0.3:
                messages[-2]["weight"] = 0  # an earlier reply kept as context only
            messages.append(reply)
        if rng.random() < 0.05:
            messages[-1]["content"] = [{"type": "text", "text": messages[-1]["content"]}]
        return {"messages": messages}
    city = rng.choice(["Paris", "Tokyo", "Lima", "Oslo"])
    arguments = json.dumps({"city": city})
    messages.append({"role": "user", "content": f"What is the weather in {city}? " + sentence(rng, 0, 10)})
    if kind < 0.95:  # tools
        call = {"id": f"call_{rng.randrange(10**6)}", "type": "function",
                "function": {"name": "get_weather", "arguments": arguments}}
        messages += [
            {"role": "assistant", "content": None, "tool_calls": [call]},
            {"role": "tool", "tool_call_id": call["id"], "content": json.dumps({"temp_c": rng.randint(-10, 35)})},
            {"role": "assistant", "content": sentence(rng, 3, 30)},
        ]
        return {"tools": [WEATHER], "messages": messages}
    messages += [  # legacy function calling
        {"role": "assistant", "function_call": {"name": "get_weather", "arguments": arguments}},
        {"role": "function", "name": "get_weather", "content": json.dumps({"temp_c": rng.randint(-10, 35)})},
        {"role": "assistant", "content": sentence(rng, 3, 30)},
    ]
    return {"functions": [WEATHER["function"]], "messages": messages}


def generate(path: Path, n: int, seed: int = 0) -> Path:
    """Write `n` examples to `path`, one in 1000 lines broken on purpose."""
    rng = random.Random(seed)
    with open(path, "w", encoding="utf-8") as out:
        for i in range(n):
            if i % 1000 == 999:
                out.write('{"messages": [{"role": "user", "content": "cut off"\n' if i % 2000 == 999
                          else json.dumps({"messages": [{"role": "user", "content": "no reply"}]}) + "\n")
                continue
            out.write(json.dumps(chat_example(rng), ensure_ascii=False) + "\n")
    return path
