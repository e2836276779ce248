"""Exports as queued work on a host (runner/exporter.py): at most OPENFT_EXPORTS_PER_HOST run at
once, whichever processes of the host claim them; an exporter that dies mid-export leaves a
partial folder that the next exporter to start removes, and the export runs again; `openft
models export --base-url` queues, waits for and downloads an export of a live server. The exports
are of a tiny base (tests/tiny_models.py) as a merged model: seconds, most of them importing torch."""

import io
import os
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from typer.testing import CliRunner

from openft.cli.app import app as cli
from openft.models.store import register_base
from openft.runner.exporter import Exporter, HostSlots
from openft.server.app import create_app
from openft.settings import Settings
from openft.store.db import Database
from openft.store.tables import ExportRow
from tests.helpers import LiveServer

BASE = "tiny-llama"


@pytest.fixture
def settings(data_dir, tiny_models) -> Settings:
    (data_dir / "models" / BASE).symlink_to(tiny_models["llama"], target_is_directory=True)
    settings = Settings(data_dir=data_dir, host_dir=data_dir / "host", lease_seconds=1)
    register_base(Database(settings), BASE)
    return settings


def queue_export(settings: Settings) -> str:
    http = TestClient(create_app(settings, run_worker=False))
    response = http.post("/v1/openft/exports", json={"model": BASE, "format": "merged"})
    assert response.status_code == 200, response.text
    return response.json()["id"]


def status(settings: Settings, export_id: str) -> ExportRow:
    with Database(settings).session() as session:
        return session.scalar(select(ExportRow).where(ExportRow.id == export_id))


def test_a_host_runs_no_more_exports_at_once_than_its_limit(settings):
    first, second = queue_export(settings), queue_export(settings)
    held = HostSlots(settings.export_slots_dir, settings.exports_per_host).take()  # another process's export
    exporter = Exporter(settings, Database(settings))
    assert not exporter.run_once()  # the host's one slot is taken: nothing starts
    assert status(settings, first).status == "queued"
    held.close()
    assert exporter.run_once() and status(settings, first).status == "succeeded"

    two = Settings(data_dir=settings.data_dir, host_dir=settings.host_dir, exports_per_host=2)
    held = HostSlots(two.export_slots_dir, 1).take()
    assert Exporter(two, Database(two)).run_once()  # the second slot is free
    assert status(two, second).status == "succeeded"
    held.close()


def test_an_export_whose_exporter_dies_midway_is_cleaned_up_and_runs_again(settings):
    export_id = queue_export(settings)
    env = {**os.environ, "OPENFT_DATA_DIR": str(settings.data_dir), "OPENFT_HOST_DIR": str(settings.host_dir)}
    env["OPENFT_LEASE_SECONDS"] = "1"
    worker = subprocess.Popen([sys.executable, "-m", "openft", "worker"], env=env, stderr=subprocess.DEVNULL)
    scratch = settings.export_scratch_dir / export_id
    deadline = time.monotonic() + 120
    # The export process writes under a hidden `.partial` name, then imports torch: seconds.
    while not list(scratch.glob(".*.partial")) and time.monotonic() < deadline:
        time.sleep(0.01)
    worker.send_signal(signal.SIGKILL)
    worker.wait()
    partial = list(scratch.glob(".*.partial"))
    assert partial, "the export never started"
    deadline = time.monotonic() + 10
    while exporting(scratch) and time.monotonic() < deadline:  # it dies with its exporter
        time.sleep(0.05)
    assert not exporting(scratch) and partial[0].exists()
    assert status(settings, export_id).status == "running"  # as far as the store knows

    time.sleep(1.1)  # the dead exporter's lease runs out
    exporter = Exporter(settings, Database(settings))
    exporter.sweep()  # what a starting exporter does first
    assert not scratch.exists()
    assert exporter.run_once()
    row = status(settings, export_id)
    assert (row.status, row.attempts) == ("succeeded", 2)
    published = settings.data_dir / "exports" / export_id / row.filename
    with tarfile.open(fileobj=io.BytesIO(published.read_bytes())) as tar:
        assert f"{BASE}-merged/model.safetensors" in tar.getnames()


def test_the_command_exports_through_a_server_and_cleans_up_there(settings, tmp_path):
    server = LiveServer(settings.data_dir, env={"OPENFT_HOST_DIR": str(settings.host_dir)})
    try:
        output = tmp_path / "tiny"
        args = ["models", "export", BASE, "--format", "merged", "-o", str(output), "--base-url", server.base_url]
        result = CliRunner().invoke(cli, args)
        assert result.exit_code == 0, result.output
        assert (output / "model.safetensors").exists() and (output / "README.md").exists()
        with Database(settings).session() as session:
            assert session.scalars(select(ExportRow)).all() == []  # deleted once downloaded
        assert list((settings.data_dir / "exports").iterdir()) == []
    finally:
        server.stop()


def exporting(scratch: Path) -> bool:
    """Whether an export process of this scratch folder still runs."""
    for process in Path("/proc").iterdir():
        try:
            if str(scratch).encode() in (process / "cmdline").read_bytes():
                return True
        except OSError:
            continue
    return False
