"""The export routes and command in process, on a fine-tune registered through the store with a
stand-in adapter (the peft export copies peft's files as they are, so no model loads here): an
export is queued, run by an exporter and fetched later; who may export what, the errors, the
archive's shape and determinism, and that a failed export leaves nothing behind. (Exports of a
trained fine-tune that load and compute: test_export.py; the queue's limit and crashes:
test_export_queue.py.)"""

import io
import json
import tarfile
import time

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from typer.testing import CliRunner

from openft import ids
from openft.cli.app import app as cli
from openft.models.store import register_base, register_fine_tune
from openft.runner.exporter import Exporter
from openft.server.app import create_app
from openft.services.keys import KeyService
from openft.settings import BUNDLED_MODEL, Settings
from openft.store.db import Database
from openft.store.tables import CheckpointRow, JobRow
from tests.helpers import TEN_EXAMPLES, in_process_client

ADAPTER_FILES = {
    "adapter_config.json": b'{"r": 8, "base_model_name_or_path": "/srv/x"}',
    "adapter_model.safetensors": b"\x01" * 1000,
}


class Exporting:
    """A server with keys for acme (A) and globex (B); B owns a fine-tune and its checkpoint."""

    def __init__(self, root):
        self.settings = Settings(data_dir=root, host_dir=root / "host")
        self.db = Database(self.settings)
        self.exporter = Exporter(self.settings, self.db)
        register_base(self.db, BUNDLED_MODEL)
        keys = KeyService(self.settings, self.db)
        self.app = create_app(self.settings, run_worker=False)
        self.http = TestClient(self.app)
        self.key_a, self.key_b = keys.create("acme")[0], keys.create("globex")[0]
        b = in_process_client(self.app, self.key_b)
        self.file = b.files.create(file=("b.jsonl", TEN_EXAMPLES), purpose="fine-tune")
        job = b.fine_tuning.jobs.create(training_file=self.file.id, model="gpt-3.5-turbo", suffix="b")
        self.job_id = job.id
        with self.db.session() as session:
            row = session.scalar(select(JobRow).where(JobRow.id == job.id))
            self.model = row.planned_model_name
            for name, key in ((self.model, f"adapters/{job.id}"), (self.checkpoint, f"checkpoints/{job.id}/step-10")):
                register_fine_tune(session, self.settings, row, name, key + ("/adapter" if "step" in key else ""))
            self.checkpoint_id = ids.checkpoint_id()
            session.add(
                CheckpointRow(
                    id=self.checkpoint_id,
                    job_id=job.id,
                    created_at=int(time.time()),
                    fine_tuned_model_checkpoint=self.checkpoint,
                    step_number=10,
                    metrics={"step": 10, "train_loss": 0.5},
                )
            )
        for folder in (f"adapters/{job.id}", f"checkpoints/{job.id}/step-10/adapter"):
            for name, content in ADAPTER_FILES.items():
                (root / folder).mkdir(parents=True, exist_ok=True)
                (root / folder / name).write_bytes(content)
        record = {
            "base_model_path": "/srv/models/x",
            "training_file": "/srv/files/f",
            "output_dir": "/srv/o",
            "seed": 3,
        }
        (root / f"adapters/{job.id}/training_config.json").write_text(json.dumps(record))

    @property
    def cli_env(self) -> dict[str, str]:
        """The command on this server's host folder (its export slots)."""
        return {"OPENFT_HOST_DIR": str(self.settings.host_dir)}

    @property
    def checkpoint(self) -> str:
        return self.model + ":ckpt-step-10"

    def call(self, method: str, key: str, path: str, **options) -> httpx.Response:
        headers = {"Authorization": f"Bearer {key}"}
        return self.http.request(method, f"/v1/openft/exports{path}", headers=headers, **options)

    def create(self, key: str, model: str, **params) -> httpx.Response:
        return self.call("POST", key, "", json={"model": model, **params})

    def export(self, key: str, model: str, **params) -> httpx.Response:
        """Create the export, run it with this host's exporter, and fetch its tar (or the answer
        that refused it, or its failed export object)."""
        created = self.create(key, model, **params)
        if created.status_code != 200:
            return created
        assert self.exporter.run_once()
        export = self.call("GET", key, f"/{created.json()['id']}")
        if export.json()["status"] != "succeeded":
            return export
        return self.call("GET", key, f"/{created.json()['id']}/content")


@pytest.fixture
def server(data_dir) -> Exporting:
    return Exporting(data_dir)


def members(response: httpx.Response) -> dict[str, bytes]:
    assert response.status_code == 200, response.text
    with tarfile.open(fileobj=io.BytesIO(response.content)) as tar:
        return {member.name: tar.extractfile(member).read() for member in tar.getmembers()}


def test_an_export_is_queued_at_once_run_by_an_exporter_and_fetched_later_by_its_owner_only(server):
    created = server.create(server.key_b, server.model, format="peft")
    export = created.json()
    assert (created.status_code, export["object"], export["status"]) == (200, "openft.export", "queued")
    assert export["id"].startswith("export-") and export["filename"] is None and export["error"] is None
    assert not server.settings.export_scratch_dir.exists()  # nothing ran in the request
    path = f"/{export['id']}"
    early = server.call("GET", server.key_b, path + "/content")
    assert early.status_code == 409 and early.json()["error"]["code"] == "export_not_ready"
    for method, suffix in (("GET", ""), ("GET", "/content"), ("DELETE", "")):
        other = server.call(method, server.key_a, path + suffix)
        assert other.status_code == 404 and other.json()["error"]["param"] == "export_id"

    assert server.exporter.run_once() and not server.exporter.run_once()  # one export, run once
    done = server.call("GET", server.key_b, path).json()
    folder = server.model.replace(":", "-") + "-peft"
    assert (done["status"], done["filename"]) == ("succeeded", f"{folder}.tar") and done["finished_at"]
    first = server.call("GET", server.key_b, path + "/content")
    assert len(first.content) == done["bytes"] and f"{folder}/adapter_model.safetensors" in members(first)
    assert server.call("GET", server.key_b, path + "/content").content == first.content  # as often as asked
    assert list(server.settings.export_scratch_dir.iterdir()) == []

    deleted = server.call("DELETE", server.key_b, path).json()
    assert deleted == {"id": export["id"], "object": "openft.export.deleted", "deleted": True}
    assert server.call("GET", server.key_b, path).status_code == 404
    assert not (server.settings.data_dir / "exports" / export["id"]).exists()


def test_the_owner_downloads_a_tar_of_the_adapter_card_and_record(server):
    response = server.export(server.key_b, server.model, format="peft")
    folder = server.model.replace(":", "-") + "-peft"
    assert response.headers["content-disposition"] == f'attachment; filename="{folder}.tar"'
    files = members(response)
    assert sorted(files) == [f"{folder}/{name}" for name in ("README.md", *ADAPTER_FILES, "training_config.json")]
    assert files[f"{folder}/adapter_model.safetensors"] == ADAPTER_FILES["adapter_model.safetensors"]
    assert json.loads(files[f"{folder}/adapter_config.json"]) == {"r": 8, "base_model_name_or_path": BUNDLED_MODEL}
    record = json.loads(files[f"{folder}/training_config.json"])
    assert record == {"base_model": BUNDLED_MODEL, "training_file": server.file.id, "validation_file": None, "seed": 3}
    card = files[f"{folder}/README.md"].decode()
    assert server.file.id in card and "sha256" in card and server.job_id in card
    # Same fine-tune, same archive: only the card's exported_at may differ (a second apart here).
    time.sleep(1.1)
    again = server.export(server.key_b, server.model, format="peft").content
    differ = [n for n in range(len(again)) if again[n] != response.content[n]]
    assert len(again) == len(response.content) and differ
    header = response.content.index(b"exported_at: ")
    assert all(header < n < header + 40 for n in differ)


def test_checkpoints_export_by_name_and_by_id(server):
    by_name = members(server.export(server.key_b, server.checkpoint, format="peft"))
    by_id = members(server.export(server.key_b, server.checkpoint_id, format="peft"))
    assert list(by_name) == list(by_id) and "checkpoint at step 10" in next(
        v.decode() for k, v in by_id.items() if k.endswith("README.md")
    )


def test_another_organization_gets_the_404_of_a_name_that_does_not_exist(server):
    for name in (server.model, server.checkpoint, server.checkpoint_id, "ft:gpt-3.5-turbo:globex:b:nothere"):
        response = server.export(server.key_a, name, format="peft")
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "model_not_found" and name in response.json()["error"]["message"]
    assert server.export("sk-wrong", server.model, format="peft").status_code == 401


def test_bad_requests_are_400_naming_the_parameter(server):
    cases = [
        ({"format": "onnx"}, server.model, "format"),
        ({}, server.model, "format"),
        ({"format": "gguf", "quantization": "q4_k_m"}, server.model, "quantization"),
        ({"format": "peft", "quantization": "q8_0"}, server.model, "quantization"),
        ({"format": "peft"}, "gpt-3.5-turbo", "format"),  # a base has no adapter
    ]
    for params, model, param in cases:
        response = server.export(server.key_b, model, **params)
        assert response.status_code == 400, (params, response.text)
        assert response.json()["error"]["param"] == param


def test_a_failed_export_leaves_nothing_behind(server):
    (server.settings.data_dir / f"adapters/{server.job_id}/adapter_model.safetensors").unlink()
    export = server.export(server.key_b, server.model, format="peft").json()
    assert export["status"] == "failed" and export["error"]["code"] == "export_failed"
    assert "failed" in export["error"]["message"] and export["filename"] is None
    assert list(server.settings.export_scratch_dir.iterdir()) == []
    assert not (server.settings.data_dir / "exports" / export["id"]).exists()
    content = server.call("GET", server.key_b, f"/{export['id']}/content")
    assert content.status_code == 409 and content.json()["error"]["code"] == "export_not_ready"

    output = server.settings.data_dir.parent / "out"
    result = CliRunner().invoke(
        cli,
        [
            "models",
            "export",
            server.model,
            "--format",
            "peft",
            "-o",
            str(output),
            "--data-dir",
            str(server.settings.data_dir),
        ],
        env=server.cli_env,
    )
    assert result.exit_code == 1 and "failed" in result.output
    assert not output.exists() and not list(output.parent.glob(".out.*"))


def test_the_command_exports_into_a_new_folder_only(server, tmp_path):
    output = tmp_path / "b-peft"
    args = ["models", "export", server.checkpoint_id, "--format", "peft", "-o", str(output)]
    args += ["--data-dir", str(server.settings.data_dir)]
    result = CliRunner().invoke(cli, args, env=server.cli_env)
    assert result.exit_code == 0, result.output
    assert (output / "adapter_model.safetensors").read_bytes() == ADAPTER_FILES["adapter_model.safetensors"]
    again = CliRunner().invoke(cli, args, env=server.cli_env)
    assert again.exit_code == 1 and "already exists" in again.output
