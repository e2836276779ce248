"""Every benchmark in one run, written as one JSON record under bench/results/ (`make bench`).

    .venv/bin/python bench/run_all.py [--only serve,engine] [--readme]

Each bench runs as its own process with `--json` and prints its figures and its ratios against
the peer it measured in the same run as one JSON object on its last line. The record adds what
the ratios depend on: the CPU's model, its cores, the flags that pick a float path (AVX512-BF16,
AMX), the compute dtype, torch's version and the commit. Records of two commits on one kind of
CPU diff line by line (keys sorted), so a regression shows as a diff. `--readme` rewrites the
"Latest records" section of bench/README.md: the newest record of each kind of CPU.

The other kind of CPU is emulated on a bf16 host by OPENFT_COMPUTE_DTYPE=float32 (the fp32 path
that a CPU without native bf16 runs): the serving benches run on both paths.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
RESULTS = BENCH / "results"
FLOAT32 = {"OPENFT_COMPUTE_DTYPE": "float32"}
# name -> (script and its arguments, extra environment). Ratios are each bench's own.
BENCHES = {
    "serve": (["serve_bench.py", "--tokens", "48", "--engines", "openft"], {}),
    "serve-fp32": (["serve_bench.py", "--tokens", "48", "--engines", "openft"], FLOAT32),
    "engine": (["engine_bench.py", "--tokens", "48"], {}),
    "engine-fp32": (["engine_bench.py", "--tokens", "48"], FLOAT32),
    "llamacpp": (["llamacpp_bench.py"], {}),
    "llamacpp-fp32": (["llamacpp_bench.py"], FLOAT32),
    "structured": (["structured_bench.py", "--tokens", "48"], {}),
    "stored": (["stored_bench.py", "--rounds", "10"], {}),
    "invariance": (["invariance_bench.py", "--rounds", "3"], {}),
    "train": (["train_bench.py", "--examples", "64"], {}),
}
FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile")
README_BEGIN, README_END = "<!-- latest records: begin -->", "<!-- latest records: end -->"


def cpu() -> dict:
    info = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    model = re.search(r"^model name\s*:\s*(.+)$", info, re.MULTILINE)
    flags = re.search(r"^flags\s*:\s*(.+)$", info, re.MULTILINE)
    present = set(flags[1].split()) if flags else set()
    return {
        "model": model[1].strip() if model else platform.processor(),
        "cores": len(os.sched_getaffinity(0)),
        "flags": [flag for flag in FLAGS if flag in present],
    }


def cpu_kind(machine: dict) -> str:
    """A file-name-safe name for a kind of CPU: its model and whether it multiplies bf16."""
    native = "bf16" if {"avx512_bf16", "amx_bf16"} & set(machine["flags"]) else "fp32"
    return f"{re.sub(r'[^a-z0-9]+', '-', machine['model'].lower()).strip('-')}-{machine['cores']}c-{native}"


def commit() -> dict:
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True).stdout.strip()

    return {"sha": git("rev-parse", "--short=12", "HEAD"), "dirty": bool(git("status", "--porcelain", "--", "src"))}


def run_bench(name: str) -> dict:
    """One bench's JSON record, with its wall time; or its error and the end of its output."""
    argv, env = BENCHES[name]
    command = [sys.executable, str(BENCH / argv[0]), *argv[1:], "--json"]
    started = time.perf_counter()
    done = subprocess.run(
        command, cwd=REPO, env={**os.environ, **env, "PYTHONPATH": str(REPO / "src")}, capture_output=True, text=True
    )
    seconds = round(time.perf_counter() - started, 1)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        tail = (done.stdout + done.stderr).strip().splitlines()[-5:]
        return {"argv": argv[1:], "env": env, "seconds": seconds, "error": f"exit {done.returncode}", "tail": tail}
    return {"argv": argv[1:], "env": env, "seconds": seconds, **json.loads(lines[-1])}


def readme_section(records: list[dict]) -> str:
    """The newest record of each kind of CPU, as one table of ratios each."""
    newest: dict[str, dict] = {}
    for record in sorted(records, key=lambda record: record["date"]):
        newest[record["cpu_kind"]] = record
    parts = [README_BEGIN, "", "## Latest records (`make bench`, bench/results/)", ""]
    for _, record in sorted(newest.items()):
        machine = record["cpu"]
        parts += [
            f"**{machine['model']}**, {machine['cores']} cores, flags {' '.join(machine['flags']) or 'none'}; "
            f"commit {record['commit']['sha']}{' (dirty)' if record['commit']['dirty'] else ''}, "
            f"{record['date']}, torch {record['torch']} (`{record['file']}`):",
            "",
            "| bench | ratio | value |",
            "|---|---|---|",
        ]
        for name, result in record["benches"].items():
            if "error" in result:
                parts.append(f"| {name} | failed: {result['error']} | |")
            for label, value in result.get("ratios", {}).items():
                parts.append(f"| {name} | {label} | {value:.2f} |")
        parts.append("")
    parts.append(README_END)
    return "\n".join(parts)


def rewrite_readme(readme: Path, results: Path) -> None:
    """Puts the latest records of `results` in `readme` (in place of the section there, if any)."""
    records = []
    for path in sorted(results.glob("*.json")):
        records.append({**json.loads(path.read_text()), "file": f"bench/results/{path.name}"})
    text = readme.read_text()
    section = readme_section(records)
    if README_BEGIN in text:
        head, rest = text.split(README_BEGIN, 1)
        text = head + section + rest.split(README_END, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    readme.write_text(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", help=f"comma-separated benches, of: {', '.join(BENCHES)}")
    parser.add_argument("--readme", action="store_true", help="rewrite bench/README.md's latest records")
    args = parser.parse_args()
    names = args.only.split(",") if args.only else list(BENCHES)
    if unknown := set(names) - set(BENCHES):
        raise SystemExit(f"unknown benches: {', '.join(sorted(unknown))}")
    import torch

    machine = cpu()
    record = {
        "date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "cpu": machine,
        "cpu_kind": cpu_kind(machine),
        "torch": torch.__version__,
        "commit": commit(),
        "benches": {},
    }
    for name in names:
        print(f"== {name}", flush=True)
        record["benches"][name] = result = run_bench(name)
        print(json.dumps(result.get("ratios", result), indent=1), flush=True)
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{record['date'].replace(':', '')}-{record['cpu_kind']}-{record['commit']['sha']}.json"
    path.write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")
    print(f"wrote {path.relative_to(REPO)}")
    if args.readme:
        rewrite_readme(BENCH / "README.md", RESULTS)


if __name__ == "__main__":
    main()
