"""The legacy openai==0.28 module API (the 2023 guide's code) against a live server.

openai 0.28.1 lives in a folder of its own, which `make` installs (`make legacy`), and runs in a
subprocess, so it never meets the current client installed in the test environment; nothing is
installed while the tests run.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import REPO

HERE = Path(__file__).parent
LEGACY_OPENAI = REPO / ".legacy" / "openai-0.28"


@pytest.fixture(scope="session")
def legacy_openai() -> Path:
    if not (LEGACY_OPENAI / "openai").is_dir():
        pytest.fail(f"openai 0.28 is not installed in {LEGACY_OPENAI}: run `make legacy` (`make test` does)")
    return LEGACY_OPENAI


def test_legacy_seed_workflow(live_server, legacy_openai):
    result = subprocess.run(
        [
            sys.executable,
            str(HERE / "legacy" / "seed_workflow.py"),
            live_server.base_url,
            str(HERE / "data" / "ahoy.jsonl"),
        ],
        env={**os.environ, "PYTHONPATH": str(legacy_openai)},
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    seen = json.loads(result.stdout.strip().splitlines()[-1])
    assert seen["fine_tuned_model"].startswith("ft:gpt-3.5-turbo:personal:legacy:")


def test_legacy_structured_outputs(live_server, legacy_openai):
    """response_format and a forced legacy function call, through openai 0.28's module API."""
    result = subprocess.run(
        [sys.executable, str(HERE / "legacy" / "structured.py"), live_server.base_url],
        env={**os.environ, "PYTHONPATH": str(legacy_openai)},
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    seen = json.loads(result.stdout.strip().splitlines()[-1])
    assert json.loads(seen["city"]).keys() == {"city", "country"}
