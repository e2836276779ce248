"""`GET /v1/openft/files/{id}/check`: `openft data check --json` for an uploaded file, in process
with the real tokenizer, but with `eta` null: the API process never benchmarks training."""

import json
from pathlib import Path

import openai
import pytest
from typer.testing import CliRunner

from openft.cli.app import app as cli
from openft.models.store import ensure_bundled_model
from openft.runner import throughput
from openft.server.app import create_app
from openft.settings import BUNDLED_MODEL, Settings
from openft.storage import Storage
from openft.store.db import Database
from tests.helpers import in_process_client

MARV = Path(__file__).parent.parent / "examples" / "marv.jsonl"


@pytest.fixture
def client(data_dir) -> openai.OpenAI:
    settings = Settings(data_dir=data_dir)
    ensure_bundled_model(settings, Database(settings))
    return in_process_client(create_app(settings, run_worker=False))


def test_the_report_is_the_cli_report_of_the_same_file_without_an_eta(client, data_dir):
    uploaded = client.files.create(file=("marv.jsonl", MARV.read_bytes()), purpose="fine-tune")
    report = client.get(f"/openft/files/{uploaded.id}/check", cast_to=object)
    assert report["eta"] is None and not (data_dir / throughput.CACHE_FILE).exists()  # nothing measured

    # The CLI measures the speed (here: seeded, as if a job had finished) and adds the ETA.
    throughput.record_job_throughput(data_dir, BUNDLED_MODEL, tokens=1000, seconds=10.0)
    cli_report = json.loads(
        CliRunner().invoke(cli, ["data", "check", str(MARV), "--json", "--data-dir", str(data_dir)]).stdout
    )
    assert cli_report["eta"]["tokens_per_second"] == 100.0
    assert report["training"]["file"] == uploaded.id  # never the server's path
    assert cli_report["plan"]["fits"] and report["plan"] is None  # the plan too is this host's
    assert report == {
        **cli_report,
        "training": {**cli_report["training"], "file": uploaded.id},
        "eta": None,
        "plan": None,
    }
    assert report["ok"] and report["training"]["stats"]["examples"] == 20 and report["cost"]["usd"] > 0
    priced = client.get(
        f"/openft/files/{uploaded.id}/check", cast_to=object, options={"params": {"model": "gpt-4o-mini"}}
    )
    assert priced["cost"]["model"] == "gpt-4o-mini"


def test_errors(client):
    few = "".join(MARV.read_text().splitlines(keepends=True)[:3]).encode()
    uploaded = client.files.create(file=("few.jsonl", few), purpose="fine-tune")
    report = client.get(f"/openft/files/{uploaded.id}/check", cast_to=object)
    assert not report["ok"] and [e["code"] for e in report["training"]["errors"]] == ["invalid_n_examples"]
    with pytest.raises(openai.NotFoundError):
        client.get("/openft/files/file-missing/check", cast_to=object)
    with pytest.raises(openai.NotFoundError) as caught:
        client.get(f"/openft/files/{uploaded.id}/check", cast_to=object, options={"params": {"model": "no-such-model"}})
    assert caught.value.code == "model_not_found"


def test_a_file_on_a_remote_storage_is_checked_from_there(tmp_path, data_dir):
    url = f"memory://openft-test/{tmp_path.name}"  # no local path: read through the storage
    settings = Settings(data_dir=data_dir, storage_url=url)
    ensure_bundled_model(settings, Database(settings))
    client = in_process_client(create_app(settings, run_worker=False))
    try:
        uploaded = client.files.create(file=("marv.jsonl", MARV.read_bytes()), purpose="fine-tune")
        report = client.get(f"/openft/files/{uploaded.id}/check", cast_to=object)
        assert report["ok"] and report["training"]["stats"]["examples"] == 20
        assert not (data_dir / "files").exists() and not (data_dir / "cache").exists()
    finally:
        Storage(url).delete("")
