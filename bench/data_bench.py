"""How fast is `openft data check`? Times its core on a generated 100k-example chat JSONL file.

The core is what the CLI does per file before it prices anything: stream and validate every
line (`openft.data.validate.iter_chat_jsonl`), then render every valid example with the real
tokenizer and chat template of the bundled model and count its tokens and trained tokens
(`openft.data.check.check_file`). The ETA benchmark and the report printing are left out: they do
not grow with the file.

Three peers are timed in the same run, on the same file, so the ratios hold on any machine:

- naive: the file read whole, validated, then `render_example` once per example (two or more
  chat-template calls and one tokenizer call each), on the first `--naive` lines, scaled up to
  the whole file; its counts must equal the check's on those lines;
- tokenizer alone: the batched tokenizer call (with offsets, as the labels need) on texts
  rendered beforehand: what counting the tokens costs, however the rest is done;
- json.loads of every line, nothing else.

The check's CPU seconds (all threads) and the share of the cores other processes used while it
ran are printed too: on a shared machine, only a run with that share at 0% is a measurement.

The file is generated from a fixed seed, so every run checks the same bytes: single-turn
chats, multi-turn chats with some replies at weight 0, tool calls (with `tools`), legacy
`functions`, examples without a system message, content given as text parts, and a sprinkle of
bad lines (invalid JSON, a missing assistant reply) that are reported and skipped.

Example usage:

    .venv/bin/python bench/data_bench.py                  # 100k examples
    .venv/bin/python bench/data_bench.py --examples 20000 --naive 2000
    .venv/bin/python bench/data_bench.py --scale 0.5      # messages half as long
    .venv/bin/python bench/data_bench.py --examples 1500000 --generate-only --keep /tmp/1gb.jsonl
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import random
import resource
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


def sentence(rng: random.Random, low: int, high: int, scale: float = 1.0) -> str:
    words = rng.choices(WORDS, k=max(min(low, 1), round(rng.randint(low, high) * scale)))
    return " ".join(words).capitalize() + rng.choice(".?!")


def chat_example(rng: random.Random, scale: float = 1.0) -> dict:
    kind = rng.random()
    messages = [] if kind < 0.1 else [{"role": "system", "content": rng.choice(SYSTEMS)}]
    if kind < 0.8:  # single or multi-turn chat
        for turn in range(1 if kind < 0.6 else rng.randint(2, 4)):
            messages.append({"role": "user", "content": sentence(rng, 4, 40, scale)})
            reply = {"role": "assistant", "content": sentence(rng, 2, 80, scale)}
            if turn > 0 and rng.random() < 0.3:
                messages[-2]["weight"] = 0  # an earlier reply kept as context only
            messages.append(reply)
        if rng.random() < 0.05:
            messages[-1]["content"] = [{"type": "text", "text": messages[-1]["content"]}]
        return {"messages": messages}
    city = rng.choice(["Paris", "Tokyo", "Lima", "Oslo"])
    arguments = json.dumps({"city": city})
    messages.append({"role": "user", "content": f"What is the weather in {city}? " + sentence(rng, 0, 10, scale)})
    if kind < 0.95:  # tools
        call = {
            "id": f"call_{rng.randrange(10**6)}",
            "type": "function",
            "function": {"name": "get_weather", "arguments": arguments},
        }
        messages += [
            {"role": "assistant", "content": None, "tool_calls": [call]},
            {"role": "tool", "tool_call_id": call["id"], "content": json.dumps({"temp_c": rng.randint(-10, 35)})},
            {"role": "assistant", "content": sentence(rng, 3, 30, scale)},
        ]
        return {"tools": [WEATHER], "messages": messages}
    messages += [  # legacy function calling
        {"role": "assistant", "function_call": {"name": "get_weather", "arguments": arguments}},
        {"role": "function", "name": "get_weather", "content": json.dumps({"temp_c": rng.randint(-10, 35)})},
        {"role": "assistant", "content": sentence(rng, 3, 30, scale)},
    ]
    return {"functions": [WEATHER["function"]], "messages": messages}


def generate(path: Path, n: int, seed: int = 0, scale: float = 1.0) -> Path:
    """Write `n` examples to `path`, one in 1000 lines broken on purpose; `scale` multiplies the
    number of words in each message."""
    rng = random.Random(seed)
    with open(path, "w", encoding="utf-8") as out:
        for i in range(n):
            if i % 1000 == 999:
                out.write(
                    '{"messages": [{"role": "user", "content": "cut off"\n'
                    if i % 2000 == 999
                    else json.dumps({"messages": [{"role": "user", "content": "no reply"}]}) + "\n"
                )
                continue
            out.write(json.dumps(chat_example(rng, scale), ensure_ascii=False) + "\n")
    return path


# ---------------------------------------------------------------------------------------------
# the three ways to read it


def floor(path: Path) -> int:
    """`json.loads` of every line: the least any check must do."""
    n = 0
    with open(path, "rb") as lines:
        for line in lines:
            try:
                json.loads(line)
            except ValueError:
                continue
            n += 1
    return n


def naive(tokenizer, raw: bytes) -> tuple[int, int, int]:
    """The file in memory, validated, then one `render_example` per example (openft before the
    batched path): (examples, tokens, trained tokens)."""
    from openft.data.labels import IGNORE_INDEX, render_example
    from openft.data.validate import validate_chat_jsonl
    from openft.trainer.spec import MAX_LENGTH

    rendered = [render_example(tokenizer, e, MAX_LENGTH) for e in validate_chat_jsonl(raw).examples]
    trained = sum(label != IGNORE_INDEX for r in rendered for label in r.labels)
    return len(rendered), sum(len(r.input_ids) for r in rendered), trained


def fast(tokenizer, path: Path) -> tuple[int, int, int]:
    """What `openft data check` does per file: (examples, tokens, trained tokens)."""
    from openft.data.check import check_file
    from openft.trainer.spec import MAX_LENGTH

    stats = check_file(tokenizer, path, MAX_LENGTH).stats
    return stats.examples, stats.tokens, stats.trained_tokens


def tokenizer_alone(tokenizer, texts: list[str]) -> int:
    """The batched tokenizer call on texts rendered beforehand: what counting tokens costs at least."""
    tokens = 0
    for start in range(0, len(texts), 256):
        encodings = tokenizer(
            texts[start : start + 256],
            add_special_tokens=False,
            return_offsets_mapping=True,
            return_attention_mask=False,
            return_token_type_ids=False,
        )
        tokens += sum(map(len, encodings["input_ids"]))
    return tokens


def rendered_texts(tokenizer, path: Path) -> list[str]:
    from openft.data.labels import _render_texts
    from openft.data.validate import ValidationReport, iter_chat_jsonl

    with open(path, "rb") as lines:
        examples = [example for _, example in iter_chat_jsonl(lines, ValidationReport())]
    return [
        text
        for start in range(0, len(examples), 256)
        for text in _render_texts(tokenizer, examples[start : start + 256])[0]
    ]


def timed(run):
    """(run(), wall seconds, CPU seconds of this process: all its threads)."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = run()
    return result, time.perf_counter() - wall, time.process_time() - cpu


def busy_jiffies() -> tuple[int, int]:
    """(busy, total) CPU time of the whole machine so far, in jiffies (Linux)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n")[0].split()[1:8]]
    return sum(fields) - fields[3] - fields[4], sum(fields)


def others_share(before: tuple[int, int], after: tuple[int, int], own_cpu_s: float, wall_s: float) -> float:
    """The share of all cores that other processes used meanwhile."""
    busy, total = after[0] - before[0], after[1] - before[1]
    return max(0.0, busy / total - own_cpu_s / (wall_s * os.cpu_count()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--examples", type=int, default=100_000, help="lines in the generated file")
    parser.add_argument("--naive", type=int, default=5_000, help="lines the naive peer reads (it is slow)")
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=Path(os.environ.get("OPENFT_DATA_DIR", ".openft")),
        help="openft data dir whose model store holds the bundled model (imported if not)",
    )
    parser.add_argument(
        "--scale", type=float, default=1.0, help="multiply the words in each message (0.5: shorter chats)"
    )
    parser.add_argument("--keep", type=Path, help="write the generated file here and keep it")
    parser.add_argument("--generate-only", action="store_true", help="write the file to --keep, time nothing")
    args = parser.parse_args()
    if args.generate_only:
        if not args.keep:
            parser.error("--generate-only needs --keep FILE")
        generate(args.keep, args.examples, scale=args.scale)
        return

    from transformers import AutoTokenizer

    from openft.cli.data import base_in_store
    from openft.settings import BUNDLED_MODEL, Settings

    settings = Settings(data_dir=args.data_dir)
    tokenizer = AutoTokenizer.from_pretrained(settings.models_dir / base_in_store(settings, BUNDLED_MODEL))
    with tempfile.TemporaryDirectory() as tmp:
        path = args.keep or Path(tmp) / "train.jsonl"
        _, seconds, _ = timed(lambda: generate(path, args.examples, scale=args.scale))
        print(f"generated {args.examples:,} lines, {path.stat().st_size / 1e6:,.1f} MB, in {seconds:.1f} s: {path}")
        sample = Path(tmp) / "sample.jsonl"
        with open(path, "rb") as lines:
            sample.write_bytes(b"".join(itertools.islice(lines, args.naive)))
        fast(tokenizer, sample)  # warm up: the template compiles, the tokenizer's caches fill
        load = os.getloadavg()[0]

        n_floor, floor_s, _ = timed(lambda: floor(path))
        before = busy_jiffies()
        (n, tokens, trained), fast_s, fast_cpu = timed(lambda: fast(tokenizer, path))
        others = others_share(before, busy_jiffies(), fast_cpu, fast_s)
        (n_naive, naive_tokens, naive_trained), naive_s, _ = timed(lambda: naive(tokenizer, sample.read_bytes()))
        assert (n_naive, naive_tokens, naive_trained) == fast(tokenizer, sample), "the fast path counts differently"
        texts = rendered_texts(tokenizer, path)
        token_count, tokenizer_s, tokenizer_cpu = timed(lambda: tokenizer_alone(tokenizer, texts))
        assert token_count == tokens

    rate, naive_rate = n / fast_s, n_naive / naive_s
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(f"{n:,} examples, {tokens:,} tokens ({tokens / n:.0f} per example), {trained:,} trained")
    print(
        f"{cores} cores; load average {load:.2f} before timing; other processes used {others:.0%} of the cores"
        " during the check (any is too much: rerun on an idle machine)"
    )
    print(
        f"openft data check:  {fast_s:6.2f} s  {rate:8,.0f} examples/s  {tokens / fast_s / 1e6:.2f} M tokens/s"
        f"  ({fast_cpu:.1f} CPU s)"
    )
    print(
        f"naive per example:  {naive_s * n / n_naive:6.2f} s  {naive_rate:8,.0f} examples/s"
        f"  (timed on {n_naive:,} lines, same counts): check is {rate / naive_rate:.1f}x faster"
    )
    print(
        f"tokenizer alone:    {tokenizer_s:6.2f} s  {n / tokenizer_s:8,.0f} examples/s"
        f"  ({tokenizer_cpu:.1f} CPU s): the floor for counting tokens; check takes {fast_s / tokenizer_s:.1f}x"
    )
    print(f"json.loads floor:   {floor_s:6.2f} s  {n_floor / floor_s:8,.0f} examples/s")
    print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:,.0f} MB")


if __name__ == "__main__":
    main()
