"""The benchmarks run outside the suite (most take minutes, some a GPU), so a rename in openft
would break them unseen: every name they import from openft must exist."""

import ast
import importlib
import json
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).parent.parent / "bench"


def openft_imports(script: Path) -> list[tuple[str, str]]:
    return [
        (node.module, alias.name)
        for node in ast.walk(ast.parse(script.read_text()))
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("openft")
        for alias in node.names
    ]


@pytest.mark.parametrize("script", sorted(BENCH.glob("*.py")), ids=lambda path: path.name)
def test_what_a_benchmark_imports_from_openft_exists(script):
    missing = [
        f"{module}.{name}"
        for module, name in openft_imports(script)
        if not hasattr(importlib.import_module(module), name) and importlib.util.find_spec(f"{module}.{name}") is None
    ]
    assert missing == []


def test_make_bench_keeps_the_latest_record_of_each_kind_of_cpu_in_the_readme(tmp_path):
    sys.path.insert(0, str(BENCH))
    try:
        import run_all
    finally:
        sys.path.remove(str(BENCH))
    machine = {"model": "Intel(R) Xeon(R) Processor", "cores": 2, "flags": ["avx2", "avx512_bf16"]}
    assert run_all.cpu_kind(machine) == "intel-r-xeon-r-processor-2c-bf16"
    results = tmp_path / "results"
    results.mkdir()
    for date, ratio in (("2026-12-06T10:00:00Z", 1.5), ("2026-12-07T10:00:00Z", 3.25)):
        record = {
            "date": date,
            "cpu": machine,
            "cpu_kind": run_all.cpu_kind(machine),
            "torch": "2.13.0",
            "commit": {"sha": "abc", "dirty": False},
            "benches": {"serve": {"ratios": {"1 stream / generate": ratio}}, "train": {"error": "exit 1"}},
        }
        (results / f"{date}.json").write_text(json.dumps(record))
    readme = tmp_path / "README.md"
    readme.write_text("# Benchmarks\n")
    run_all.rewrite_readme(readme, results)
    run_all.rewrite_readme(readme, results)  # rewritten in place, not appended twice
    text = readme.read_text()
    assert text.count(run_all.README_BEGIN) == 1
    assert "| serve | 1 stream / generate | 3.25 |" in text and "1.50" not in text
    assert "| train | failed: exit 1 | |" in text
