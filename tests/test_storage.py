"""The artifact storage on a local directory (the default), a `file://` URL and fsspec's
`memory://` (standing in for an object store: nothing in it has a local path), and the files
service and the worker's checkpoint restore on top of it."""

import io
import json

import pytest

from openft.errors import OpenFTError
from openft.models.store import ensure_bundled_model
from openft.runner.artifacts import push_checkpoint, restore_checkpoint
from openft.server.app import create_app
from openft.services.files import FileService
from openft.settings import Settings
from openft.storage import Storage
from openft.store.db import Database
from tests.helpers import in_process_client

EXAMPLE = {"messages": [{"role": "user", "content": "Hi?"}, {"role": "assistant", "content": "Hello."}]}
TRAINING = (json.dumps(EXAMPLE) + "\n").encode() * 10


@pytest.fixture(params=["directory", "file-url", "memory"])
def storage(request, tmp_path) -> Storage:
    url = {
        "directory": str(tmp_path / "artifacts"),
        "file-url": f"file://{tmp_path / 'artifacts'}",
        "memory": f"memory://openft-test/{tmp_path.name}",
    }[request.param]
    yield Storage(url)
    Storage(url).delete("")


def test_files_are_published_read_and_deleted(storage, tmp_path):
    source = tmp_path / "upload.part"
    source.write_bytes(b"abc")
    storage.put(source, "files/file-1")
    assert storage.exists("files/file-1") and source.exists()
    with storage.open("files/file-1") as stream:
        assert stream.read() == b"abc"
    storage.delete("files/file-1")
    storage.delete("files/file-1")  # already gone: fine
    assert not storage.exists("files/file-1")


def test_a_local_directory_is_used_in_place_and_anything_else_is_fetched_once(storage, tmp_path):
    adapter = tmp_path / "adapter"
    (adapter / "sub").mkdir(parents=True)
    (adapter / "adapter_config.json").write_text("{}")
    (adapter / "sub" / "weights.bin").write_bytes(b"\0" * 10)
    storage.put_dir(adapter, "adapters/ftjob-1")
    storage.put_dir(adapter, "adapters/ftjob-1")  # a retry replaces, never nests
    fetched = storage.fetch("adapters/ftjob-1", tmp_path / "cache")
    assert sorted(p.relative_to(fetched).as_posix() for p in fetched.rglob("*") if p.is_file()) == [
        "adapter_config.json",
        "sub/weights.bin",
    ]
    if storage.local_root is not None:
        assert fetched == storage.local_root / "adapters/ftjob-1"
    else:
        assert fetched == tmp_path / "cache" / "adapters/ftjob-1"
        assert storage.location("adapters/ftjob-1").startswith("memory://")
        storage.delete("adapters/ftjob-1")
        assert storage.fetch("adapters/ftjob-1", tmp_path / "cache") == fetched  # cached: not fetched again


def test_a_checkpoint_is_restored_on_a_host_that_never_ran_the_job(storage, tmp_path):
    written = tmp_path / "host-a" / "checkpoints" / "step-5"
    (written / "adapter").mkdir(parents=True)
    (written / "adapter" / "adapter_model.safetensors").write_bytes(b"weights")
    (written / "trainer_state.pt").write_bytes(b"state")
    assert push_checkpoint(storage, "ftjob-1", 5, written) == "checkpoints/ftjob-1/step-5/adapter"

    checkpoints = tmp_path / "host-b" / "checkpoints"
    assert restore_checkpoint(storage, "ftjob-1", 5, checkpoints, tmp_path / "host-b" / "fetched")
    assert (checkpoints / "step-5" / "trainer_state.pt").read_bytes() == b"state"
    assert (checkpoints / "step-5" / "adapter" / "adapter_model.safetensors").read_bytes() == b"weights"
    assert [p.name for p in checkpoints.iterdir()] == ["step-5"]
    assert not restore_checkpoint(storage, "ftjob-1", 10, checkpoints, tmp_path / "host-b" / "fetched")


def test_uploads_go_through_a_remote_storage(tmp_path, data_dir):
    url = f"memory://openft-test/{tmp_path.name}"
    settings = Settings(data_dir=data_dir, storage_url=url)
    ensure_bundled_model(settings, Database(settings))
    client = in_process_client(create_app(settings, run_worker=False))

    created = client.files.create(file=("train.jsonl", TRAINING), purpose="fine-tune")
    storage = Storage(url)
    with storage.open(f"files/{created.id}") as stream:
        assert stream.read() == TRAINING
    assert client.files.content(created.id).content == TRAINING
    row = FileService(settings, Database(settings)).get(settings.organization_id, created.id)
    assert row.location == f"memory:///openft-test/{tmp_path.name}/files/{created.id}"
    assert not (settings.data_dir / "files").exists()
    assert list((settings.data_dir / "staging").iterdir()) == []  # the staging file was uploaded, then removed

    job = client.fine_tuning.jobs.create(training_file=created.id, model="gpt-3.5-turbo")  # reads it back to check it
    assert job.status == "validating_files"
    client.files.delete(created.id)
    assert not storage.exists(f"files/{created.id}")
    storage.delete("")


def test_a_rejected_upload_leaves_nothing_in_a_remote_storage(tmp_path):
    url = f"memory://openft-test/{tmp_path.name}"
    settings = Settings(data_dir=tmp_path / "data", storage_url=url)
    files = FileService(settings, Database(settings))
    with pytest.raises(OpenFTError):
        files.create(settings.organization_id, "t.jsonl", "fine-tune", io.BytesIO(b"{not json\n"))
    assert not Storage(url).exists("files")
    assert list((settings.data_dir / "staging").iterdir()) == []
