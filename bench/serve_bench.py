"""Serving through the HTTP API against transformers `generate`, in one run.

    .venv/bin/python bench/serve_bench.py [--tokens 64] [--port 8766] [--engines openft,hf]

For each engine, a real `openft serve` on a fresh data dir holding the bundled model and 8 LoRA
adapters (r=8 on all linear layers, random B so each changes the output, registered as
fine-tunes of the local organization), then, streaming through the official client at
temperature 0:

- 1 stream on the base model: decode tokens/s and time to first token;
- 8 concurrent streams on one adapter: aggregate decode tokens/s, TTFT p50 / p95;
- 8 concurrent streams over 8 different adapters: the same;
- 8 streams on one adapter arriving 0.25 s apart (a new request joins a running batch).

After the servers stop, the peer: `generate` on the same model and prompts in this process,
1 prompt and a left-padded batch of 8, greedy. Prints every figure and the ratios that issue 7
sets goals for (1 stream >= 3x generate; 8 streams >= 2.5x generate at batch 8; 8 adapters
within 20% of 8 streams of one adapter), for the first engine listed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

from openai import AsyncOpenAI

from engine_bench import PROMPTS
from engine_bench import make_adapters as make_random_adapters
from openft.cli.demo import background_server
from openft.models.store import import_bundled

ADAPTERS = 8


def make_adapters(data_dir: Path) -> list[str]:
    """Random LoRA adapters on the bundled model, stored and registered as fine-tunes."""
    from openft.settings import Settings
    from openft.storage import Storage
    from openft.store.db import Database
    from openft.store.tables import ModelRow

    settings = Settings(data_dir=data_dir)
    storage, db = Storage.for_settings(settings), Database(settings)
    base = import_bundled(settings.models_dir)
    names = []
    with tempfile.TemporaryDirectory() as scratch:
        keys = make_random_adapters(base, storage, Path(scratch), ADAPTERS, std=0.002)
    for n, key in enumerate(keys):
        name = f"ft:{base.name}:{settings.organization}:bench{n}:{n:08d}"
        with db.session() as session:
            session.add(
                ModelRow(
                    id=name,
                    created=int(time.time()),
                    owned_by=settings.organization,
                    base_model=base.name,
                    adapter_key=key,
                    organization_id=settings.organization_id,
                )
            )
        names.append(name)
    return names


async def stream(client: AsyncOpenAI, model: str, prompt: str, tokens: int) -> tuple[float, float, int]:
    """(time to first token, seconds, completion tokens) of one streamed chat."""
    started = time.perf_counter()
    first, count = None, 0
    response = await client.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": prompt}],
        max_tokens=tokens,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    )
    async for chunk in response:
        if first is None and chunk.choices and chunk.choices[0].delta.content:
            first = time.perf_counter() - started
        if chunk.usage:
            count = chunk.usage.completion_tokens
    return first or 0.0, time.perf_counter() - started, count


async def concurrent(client: AsyncOpenAI, models: list[str], tokens: int, apart: float = 0.0) -> dict:
    async def later(n: int, model: str, prompt: str):
        await asyncio.sleep(n * apart)
        return await stream(client, model, prompt, tokens)

    started = time.perf_counter()
    results = await asyncio.gather(*(later(n, m, p) for n, (m, p) in enumerate(zip(models, PROMPTS))))
    wall = time.perf_counter() - started
    ttfts = sorted(r[0] for r in results)
    return {
        "tokens_per_s": sum(r[2] for r in results) / wall,
        "ttft_p50": statistics.median(ttfts),
        "ttft_p95": ttfts[min(len(ttfts) - 1, round(0.95 * (len(ttfts) - 1)))],
    }


async def api_figures(base_url: str, adapters: list[str], tokens: int) -> dict:
    client = AsyncOpenAI(base_url=base_url, api_key="sk-bench", timeout=3600)
    for model in ["gpt-3.5-turbo", *adapters]:  # load the base and every adapter once
        await stream(client, model, "Hi", 2)
    ttft, seconds, count = await stream(client, "gpt-3.5-turbo", PROMPTS[0], tokens)
    return {
        "1 stream": {"tokens_per_s": count / seconds, "ttft_p50": ttft, "ttft_p95": ttft},
        "8 streams, 1 adapter": await concurrent(client, [adapters[0]] * len(PROMPTS), tokens),
        "8 streams, 8 adapters": await concurrent(client, adapters, tokens),
        "8 streams, 0.25 s apart": await concurrent(client, [adapters[0]] * len(PROMPTS), tokens, apart=0.25),
    }


def generate_figures(model_dir: Path, tokens: int) -> dict:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.set_num_threads(2)
    tokenizer = AutoTokenizer.from_pretrained(model_dir, padding_side="left")
    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    figures = {}
    for label, prompts in (("1 prompt", PROMPTS[:1]), ("batch of 8", PROMPTS)):
        chats = [[{"role": "user", "content": p}] for p in prompts]
        inputs = tokenizer.apply_chat_template(
            chats, add_generation_prompt=True, return_tensors="pt", return_dict=True, padding=True
        )
        model.generate(**inputs, max_new_tokens=2, do_sample=False)
        started = time.perf_counter()
        output = model.generate(**inputs, max_new_tokens=tokens, do_sample=False, min_new_tokens=tokens)
        figures[label] = output[:, inputs["input_ids"].shape[1] :].numel() / (time.perf_counter() - started)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--port", type=int, default=8766)
    parser.add_argument("--engines", default="openft,hf", help="OPENFT_ENGINE values to measure, in order")
    parser.add_argument("--json", action="store_true", help="print one JSON record of the figures at the end")
    args = parser.parse_args()
    engines = args.engines.split(",")
    api = {}
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp)
        import_bundled(data_dir / "models")
        adapters = make_adapters(data_dir)
        for engine in engines:
            os.environ["OPENFT_ENGINE"] = engine
            with background_server(data_dir, args.port, quiet=True) as (base_url, _):
                api[engine] = asyncio.run(api_figures(base_url, adapters, args.tokens))
        peer = generate_figures(import_bundled(data_dir / "models"), args.tokens)
    for engine, figures_by_label in api.items():
        for label, figures in figures_by_label.items():
            print(
                f"{engine:6} API {label:24} {figures['tokens_per_s']:7.1f} tokens/s   "
                f"TTFT p50 {figures['ttft_p50']:6.2f} s  p95 {figures['ttft_p95']:6.2f} s"
            )
    for label, value in peer.items():
        print(f"generate, {label:16} {value:7.1f} tokens/s")
    for engine, figures in api.items():
        print(f"[{engine}]")
        one, eight = figures["1 stream"]["tokens_per_s"], figures["8 streams, 1 adapter"]["tokens_per_s"]
        print(f"1 stream / generate 1 prompt:            {one / peer['1 prompt']:.2f}x (goal 3x)")
        print(f"8 streams / generate batch of 8:         {eight / peer['batch of 8']:.2f}x (goal 2.5x)")
        slower = 1 - figures["8 streams, 8 adapters"]["tokens_per_s"] / figures["8 streams, 1 adapter"]["tokens_per_s"]
        print(f"8 adapters vs 1 adapter, 8 streams:      {slower:+.0%} slower (goal at most 20%)")
    if args.json:
        ratios = {}
        for engine, figures in api.items():
            ratios[f"{engine} API 1 stream / generate 1 prompt"] = (
                figures["1 stream"]["tokens_per_s"] / peer["1 prompt"]
            )
            eight = figures["8 streams, 1 adapter"]["tokens_per_s"]
            ratios[f"{engine} API 8 streams / generate batch of 8"] = eight / peer["batch of 8"]
        print(json.dumps({"figures": {"api": api, "generate": peer}, "ratios": ratios}))


if __name__ == "__main__":
    main()
