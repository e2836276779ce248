"""The legacy openai==0.28 module API (the 2023 guide's code) against a live server.

openai 0.28.1 is installed into its own folder and run in a subprocess, so it never meets the
current client installed in the test environment.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).parent

pytestmark = pytest.mark.slow


@pytest.fixture(scope="session")
def legacy_openai(tmp_path_factory) -> Path:
    target = tmp_path_factory.mktemp("openai-0.28")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-warn-conflicts",
            "--target",
            str(target),
            "openai==0.28.1",
        ],
        check=True,
    )
    return target


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
