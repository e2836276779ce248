"""Keep answering under load: a server that is training a job gets 50 concurrent chat requests
and 20 concurrent uploads (loopback only, bounded in count and time).

    .venv/bin/python bench/load_bench.py [--data-dir DIR]

Prints the count of 5xx answers (must be 0), p50/p95 latency of the non-chat calls (uploads and
job reads made while the chats are queued) against the same calls on the idle server (the peer,
measured in the same run), chat latency, and the server's peak memory (RSS, with children).
"""

import argparse
import asyncio
import statistics
import tempfile
import threading
import time
from pathlib import Path

import httpx
import psutil

from openft.cli.demo import background_server
from openft.models.store import import_bundled

REPO = Path(__file__).resolve().parent.parent
CHATS, UPLOADS, READS = 50, 20, 40
TIME_LIMIT_S = 900


def p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=20)[-1]


async def timed(call) -> tuple[int, float]:
    started = time.perf_counter()
    response = await call
    return response.status_code, time.perf_counter() - started


async def non_chat_calls(http: httpx.AsyncClient, job_id: str) -> list[tuple[int, float]]:
    content = (REPO / "examples" / "marv.jsonl").read_bytes()
    uploads = [
        timed(http.post("/files", files={"file": ("u.jsonl", content)}, data={"purpose": "fine-tune"}))
        for _ in range(UPLOADS)
    ]
    reads = [timed(http.get(f"/fine_tuning/jobs/{job_id}/events")) for _ in range(READS)]
    return await asyncio.gather(*uploads, *reads)


async def load(base_url: str, job_id: str) -> dict:
    limits = httpx.Limits(max_connections=200)
    async with httpx.AsyncClient(base_url=base_url, timeout=TIME_LIMIT_S, limits=limits) as http:
        idle = await non_chat_calls(http, job_id)  # peer: before any chat is queued
        body = {"model": "gpt-3.5-turbo", "messages": [{"role": "user", "content": "Say hi."}], "max_tokens": 8}
        chats = [asyncio.ensure_future(timed(http.post("/chat/completions", json=body))) for _ in range(CHATS)]
        await asyncio.sleep(1)
        busy = await non_chat_calls(http, job_id)
        chat_results = await asyncio.gather(*chats)
    statuses = [status for status, _ in idle + busy + chat_results]
    return {
        "5xx": sum(status >= 500 for status in statuses),
        "non_2xx": sum(not 200 <= status < 300 for status in statuses),
        "idle_non_chat_p50_s": statistics.median(t for _, t in idle),
        "idle_non_chat_p95_s": p95([t for _, t in idle]),
        "busy_non_chat_p50_s": statistics.median(t for _, t in busy),
        "busy_non_chat_p95_s": p95([t for _, t in busy]),
        "chat_p95_s": p95([t for _, t in chat_results]),
    }


def watch_memory(pid: int, stop: threading.Event, peak: list[int]) -> None:
    process = psutil.Process(pid)
    while not stop.is_set():
        try:
            rss = process.memory_info().rss + sum(c.memory_info().rss for c in process.children(recursive=True))
        except psutil.Error:
            rss = 0
        peak[0] = max(peak[0], rss)
        time.sleep(0.2)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data-dir", type=Path, default=Path(tempfile.mkdtemp(prefix="openft-load-")))
    parser.add_argument("--port", type=int, default=8766)
    args = parser.parse_args()
    import_bundled(args.data_dir / "models")
    stop, peak = threading.Event(), [0]
    with background_server(args.data_dir, args.port, quiet=True) as (base_url, server):
        threading.Thread(target=watch_memory, args=(server.pid, stop, peak), daemon=True).start()
        with httpx.Client(base_url=base_url, timeout=60) as http:
            marv = (REPO / "examples" / "marv.jsonl").read_bytes()
            file_id = http.post("/files", files={"file": ("marv.jsonl", marv)}, data={"purpose": "fine-tune"}).json()[
                "id"
            ]
            job = http.post("/fine_tuning/jobs", json={"training_file": file_id, "model": "gpt-3.5-turbo"}).json()
            while http.get(f"/fine_tuning/jobs/{job['id']}").json()["status"] != "running":
                time.sleep(0.2)
        figures = asyncio.run(asyncio.wait_for(load(base_url, job["id"]), TIME_LIMIT_S))
        stop.set()
    figures["busy_over_idle_p95"] = figures["busy_non_chat_p95_s"] / figures["idle_non_chat_p95_s"]
    figures["peak_rss_mib"] = peak[0] / 2**20
    for name, value in figures.items():
        print(f"{name:22} {value:10.3f}")


if __name__ == "__main__":
    main()
