"""What does `store: true` cost a reply? 50 concurrent chats, stored and not, through a real HTTP
server, and whether every stored one is there afterwards.

The server is openft's app under uvicorn on loopback, in its own process, with a scripted
engine that answers at once: a model's decoding (hundreds of milliseconds, varying with the
batch) would bury a difference of milliseconds, and storing is the same code whichever engine
answered. The peer is the same request without `store`, measured in the same run: rounds of 50
concurrent requests alternate between the two, so both see the same machine. Printed: p50 and
p95 latency of each, the added p95 (the target: at most 5 ms), the same difference between two
halves of the unstored requests (the run's noise: an added p95 within it is no measurable cost),
and the stored count against the number sent (the target: equal; read through the official
client's `chat.completions.list`).

Example usage:

    .venv/bin/python bench/stored_bench.py                 # 20 rounds of 50 each way
    .venv/bin/python bench/stored_bench.py --rounds 40 --concurrency 50 --stream
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import socket
import statistics
import tempfile
import time
from pathlib import Path

import httpx
import openai
import uvicorn

from openft.inference.engine import Chunk
from openft.models.store import register_base
from openft.server.app import create_app
from openft.settings import BUNDLED_MODEL, Settings
from openft.store.db import Database


class InstantEngine:
    def context_length(self, model):
        return 8192

    def count_prompt_tokens(self, model, prompt):
        return 12

    def generate(self, model, prompt, params):
        yield Chunk("A reply of a few words, ", None, 12, 6)
        yield Chunk("as a small model gives.", "stop", 12, 12)


def serve(data_dir: Path, port: int) -> None:
    settings = Settings(data_dir=data_dir)
    register_base(Database(settings), BUNDLED_MODEL)
    app = create_app(settings, run_worker=False)
    app.state.chat.engine = InstantEngine()
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", timeout_keep_alive=120)


def start_server(data_dir: Path) -> tuple[str, multiprocessing.Process]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    process = multiprocessing.get_context("spawn").Process(target=serve, args=(data_dir, port), daemon=True)
    process.start()
    base_url = f"http://127.0.0.1:{port}/v1"
    while True:
        try:
            if httpx.get(f"{base_url}/models", timeout=2).status_code == 200:
                return base_url, process
        except httpx.TransportError:
            time.sleep(0.2)


async def one(http: httpx.AsyncClient, n: int, store: bool, stream: bool) -> float:
    body = {
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": f"Question {n}: what is {n} + {n}?"}],
        "stream": stream,
    }
    if store:
        body |= {"store": True, "metadata": {"bench": "stored", "n": str(n)}}
    started = time.perf_counter()
    async with http.stream("POST", "/chat/completions", json=body) as response:
        async for _ in response.aiter_bytes():
            pass
    assert response.status_code == 200, response.status_code
    return time.perf_counter() - started


async def run(base_url: str, rounds: int, concurrency: int, stream: bool) -> dict[bool, list[float]]:
    latencies: dict[bool, list[float]] = {True: [], False: []}
    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(base_url=base_url, limits=limits, timeout=60) as http:
        await asyncio.gather(*(one(http, -1, False, stream) for _ in range(concurrency)))  # warm up
        n = 0
        for round_ in range(rounds):
            for store in (round_ % 2 == 0, round_ % 2 == 1):  # alternate which goes first
                batch = range(n, n + concurrency)
                n += concurrency
                latencies[store] += await asyncio.gather(*(one(http, i, store, stream) for i in batch))
    return latencies


def p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=20)[-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--stream", action="store_true", help="streamed replies (stored once complete)")
    parser.add_argument("--json", action="store_true", help="print one JSON record of the figures at the end")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as root:
        base_url, server = start_server(Path(root))
        latencies = asyncio.run(run(base_url, args.rounds, args.concurrency, args.stream))
        client = openai.OpenAI(base_url=base_url, api_key="sk-bench", max_retries=0)
        stored = sum(1 for _ in client.chat.completions.list(metadata={"bench": "stored"}, limit=100))
        server.terminate()
        server.join()

    sent = len(latencies[True])
    rows = [
        ("requests each way", f"{sent}", f"{len(latencies[False])}"),
        (
            "p50 latency",
            f"{statistics.median(latencies[True]) * 1000:.1f} ms",
            f"{statistics.median(latencies[False]) * 1000:.1f} ms",
        ),
        ("p95 latency", f"{p95(latencies[True]) * 1000:.1f} ms", f"{p95(latencies[False]) * 1000:.1f} ms"),
    ]
    print(f"{args.concurrency} concurrent chats, {'streamed' if args.stream else 'not streamed'}")
    print(f"{'':20} {'store: true':>14} {'no store (peer)':>16}")
    for name, a, b in rows:
        print(f"{name:20} {a:>14} {b:>16}")
    added = (p95(latencies[True]) - p95(latencies[False])) * 1000
    unstored = latencies[False]
    noise = (p95(unstored[0::2]) - p95(unstored[1::2])) * 1000
    print(f"added p95 latency of storing: {added:+.1f} ms (target ≤ 5 ms)")
    print(f"noise, unstored against unstored: {noise:+.1f} ms")
    print(f"stored afterwards: {stored} of {sent} ({'nothing lost' if stored == sent else f'{sent - stored} LOST'})")
    if args.json:
        figures = {
            "p95 stored ms": p95(latencies[True]) * 1000,
            "p95 unstored ms": p95(latencies[False]) * 1000,
            "added p95 ms": added,
            "noise ms": noise,
            "stored": stored,
            "sent": sent,
        }
        print(
            json.dumps({"figures": figures, "ratios": {"p95 stored / unstored": p95(latencies[True]) / p95(unstored)}})
        )


if __name__ == "__main__":
    main()
