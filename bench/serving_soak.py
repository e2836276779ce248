"""Serving soak: tests/test_serving_fuzz.py for longer. Rounds of every edge case of
tests/serving_cases.py (and n 128), seeded random mixes of parameters and ordinary greedy
requests, sent 8 at a time to a live `openft serve`, until --requests have been answered.

    .venv/bin/python bench/serving_soak.py [--requests 3000] [--data-dir DIR] [--port 8767]

Every --report requests it prints the requests answered, how many broke a rule (a 5xx, a status
other than the case's, a stream without [DONE], an ordinary reply that changed, an answer slower
than the bound), the slowest answer so far, and the RSS of the server and of its engine process:
flat RSS over thousands of requests is the figure this soak is for. Exits 1 if any rule broke.
"""

import argparse
import random
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import psutil

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # the cases are the fuzz test's

from tests.serving_cases import (  # noqa: E402
    ANSWERED_WITHIN,
    ORDINARY,
    Case,
    check,
    edge_cases,
    random_mixes,
    request,
    send,
)

from openft.cli.demo import background_server  # noqa: E402
from openft.models.store import import_bundled  # noqa: E402

MIXES_PER_ROUND = 60
ORDINARY_PER_ROUND = 20
HUGE_N = Case("n 128", request(n=128, max_tokens=1, temperature=1, seed=7))  # too slow for the CI run


def engine_process(server: psutil.Process) -> psutil.Process | None:
    return next((p for p in server.children() if "openft.inference.process" in p.cmdline()), None)


def rss_mib(process: psutil.Process | None) -> float:
    return process.memory_info().rss / 2**20 if process is not None else 0.0


def soak(base_url: str, server: psutil.Process, requests: int, report: int) -> int:
    root = base_url.removesuffix("/v1")
    broken, answered, slowest, next_report, started = 0, 0, 0.0, report, time.monotonic()
    with httpx.Client(base_url=base_url, timeout=ANSWERED_WITHIN) as http, ThreadPoolExecutor(8) as pool:

        def ordinary(_) -> str:
            return http.post("/chat/completions", json=ORDINARY).json()["choices"][0]["message"]["content"]

        greedy = ordinary(None)
        print(f"{'requests':>8} {'broken':>6} {'slowest s':>9} {'server MiB':>10} {'engine MiB':>10} {'elapsed s':>9}")
        for round_number in range(sys.maxsize):
            rng = random.Random(round_number)
            jobs = [("case", case) for case in [*edge_cases(), HUGE_N, *random_mixes(rng, MIXES_PER_ROUND)]]
            jobs += [("ordinary", None)] * ORDINARY_PER_ROUND
            rng.shuffle(jobs)
            futures = [
                (kind, job, pool.submit(send, http, job) if kind == "case" else pool.submit(ordinary, job))
                for kind, job in jobs
            ]
            for kind, job, future in futures:
                try:
                    if kind == "case":
                        answer = future.result()
                        slowest = max(slowest, answer.seconds)
                        check(job, answer)
                    else:
                        assert future.result() == greedy, "an ordinary reply changed"
                except (AssertionError, httpx.HTTPError) as error:
                    broken += 1
                    print(f"broken: {job.name if kind == 'case' else 'ordinary'}: {error!r}"[:300])
                answered += 1
                if answered >= next_report:
                    next_report += report
                    print(
                        f"{answered:>8} {broken:>6} {slowest:>9.1f} {rss_mib(server):>10.0f} "
                        f"{rss_mib(engine_process(server)):>10.0f} {time.monotonic() - started:>9.0f}"
                    )
            if answered >= requests:
                break
    print("health:", httpx.get(f"{root}/health", timeout=30).json())
    return broken


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--report", type=int, default=250, help="print a line every this many requests")
    parser.add_argument("--data-dir", type=Path, default=Path(tempfile.mkdtemp(prefix="openft-soak-")))
    parser.add_argument("--port", type=int, default=8767)
    args = parser.parse_args()
    import_bundled(args.data_dir / "models")
    with background_server(args.data_dir, args.port, quiet=True) as (base_url, server):
        broken = soak(base_url, psutil.Process(server.pid), args.requests, args.report)
    sys.exit(1 if broken else 0)


if __name__ == "__main__":
    main()
