"""What running a Python grader in its sandbox costs per item: a trivial `grade` (it returns a
constant, so everything measured is overhead) over many items through `openft.graders.grade`,
in the grader's warm sandbox process, against the same function called in this process (the
peer: no sandbox at all). Also printed: the first item (the sandbox starting: namespaces,
mounts, chroot, Python) and a sandbox started afresh for every item, the cost a design without
a warm process would pay. The target: at most 20 ms of overhead per item.

Example usage:

    .venv/bin/python bench/grader_bench.py               # 500 items
    .venv/bin/python bench/grader_bench.py --items 2000
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

from openft.graders import grade, make_sample, parse_grader

SOURCE = "def grade(sample, item):\n    return 1.0\n"
SPEC = {"type": "python", "name": "trivial", "source": SOURCE}


async def no_model(*_):
    raise AssertionError("a python grader calls no model")


def milliseconds(seconds: list[float]) -> str:
    ordered = sorted(seconds)
    p95 = ordered[int(0.95 * (len(ordered) - 1))]
    return (
        f"mean {statistics.mean(ordered) * 1e3:.2f} ms, p50 {statistics.median(ordered) * 1e3:.2f}, p95 {p95 * 1e3:.2f}"
    )


async def timed_grades(grader, items: int) -> list[float]:
    times = []
    for n in range(items):
        started = time.perf_counter()
        result = await grade(grader, make_sample(f"answer {n}"), {"n": n}, no_model)
        times.append(time.perf_counter() - started)
        assert result.reward == 1.0, result.errors
    return times


async def main(items: int, fresh: int) -> None:
    namespace: dict = {}
    exec(SOURCE, namespace)
    in_process = []
    for n in range(items):
        started = time.perf_counter()
        namespace["grade"](make_sample(f"answer {n}"), {"n": n})
        in_process.append(time.perf_counter() - started)

    grader = parse_grader(SPEC)
    try:
        first = await timed_grades(grader, 1)
        warm = await timed_grades(grader, items)
    finally:
        grader.close()

    restarted = []
    for _ in range(fresh):
        grader = parse_grader(SPEC)
        restarted += await timed_grades(grader, 1)
        grader.close()

    overhead = statistics.mean(warm) - statistics.mean(in_process)
    print(f"in process (peer), {items} items:      {milliseconds(in_process)}")
    print(f"sandbox, warm process, {items} items:  {milliseconds(warm)}")
    print(f"sandbox, first item (start):     {first[0] * 1e3:.0f} ms")
    print(f"sandbox, started per item ({fresh}):  {milliseconds(restarted)}")
    print(f"overhead per item, warm: {overhead * 1e3:.2f} ms (target: at most 20 ms)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=500)
    parser.add_argument("--fresh", type=int, default=20, help="items graded each in a sandbox started for it")
    arguments = parser.parse_args()
    asyncio.run(main(arguments.items, arguments.fresh))
