"""Upload limits and durability, in process: 413 over the size limit, 400 naming an over-long
line, and a rejected or broken upload leaves no file on disk and no row; stored paths derive from
the file id only, never from the client's filename."""

import hashlib
import io
import json

import openai
import pytest

from openft.errors import OpenFTError
from openft.server.app import create_app
from openft.services.files import FileService, sanitize_filename
from openft.settings import Settings
from openft.store.db import Database
from tests.helpers import in_process_client

SYSTEM = {"role": "system", "content": "You are terse."}


def jsonl(n: int, reply: str = "A.") -> bytes:
    examples = (
        {"messages": [SYSTEM, {"role": "user", "content": f"Q{i}?"}, {"role": "assistant", "content": reply}]}
        for i in range(n)
    )
    return "".join(json.dumps(e) + "\n" for e in examples).encode()


@pytest.fixture
def settings(tmp_path) -> Settings:
    return Settings(data_dir=tmp_path / "data", max_upload_bytes=4000, max_line_bytes=300)


@pytest.fixture
def client(settings) -> openai.OpenAI:
    return in_process_client(create_app(settings, run_worker=False))


def stored_files(settings: Settings) -> list[str]:
    """Everything in the files dir, hidden staging files included."""
    return sorted(p.name for p in settings.files_dir.iterdir()) if settings.files_dir.exists() else []


def assert_nothing_stored(client, settings) -> None:
    assert client.files.list().data == []
    assert stored_files(settings) == []


@pytest.mark.parametrize("purpose", ["fine-tune", "assistants"])
def test_over_the_size_limit_is_413_and_stores_nothing(client, settings, purpose):
    content = jsonl(60)  # about 5 KB: streamed, then stopped at the limit
    assert settings.max_upload_bytes < len(content) < 2**20
    with pytest.raises(openai.APIStatusError) as caught:
        client.files.create(file=("big.jsonl", content), purpose=purpose)
    assert caught.value.status_code == 413
    assert (caught.value.code, caught.value.body["param"]) == ("file_too_large", "file")
    assert "4000 bytes" in caught.value.message and "OPENFT_MAX_UPLOAD_BYTES" in caught.value.message
    assert_nothing_stored(client, settings)


def test_a_declared_length_over_the_limit_is_413_before_the_body_is_read(client, settings):
    with pytest.raises(openai.APIStatusError) as caught:
        client.files.create(file=("huge.jsonl", b"x" * (2**20 + 5000)), purpose="assistants")
    assert caught.value.status_code == 413 and caught.value.code == "file_too_large"
    assert_nothing_stored(client, settings)


def test_an_over_long_line_is_400_naming_it_and_stores_nothing(client, settings):
    content = jsonl(2) + jsonl(1, reply="x" * 400) + jsonl(8)
    with pytest.raises(openai.BadRequestError) as caught:
        client.files.create(file=("train.jsonl", content), purpose="fine-tune")
    assert "Line 3: longer than 300 bytes" in caught.value.message
    assert (caught.value.code, caught.value.body["param"]) == ("line_too_long", "file")
    assert_nothing_stored(client, settings)


def test_the_line_limit_applies_to_fine_tune_files_only(client):
    content = b"y" * 1000 + b"\n"
    assert client.files.create(file=("notes.txt", content), purpose="assistants").bytes == len(content)


def test_an_accepted_upload_is_stored_under_its_id_with_its_sha256(client, settings):
    content = jsonl(10)
    created = client.files.create(file=("../../etc/train.jsonl", content), purpose="fine-tune")
    assert created.filename == "train.jsonl"
    assert stored_files(settings) == [created.id]
    assert (settings.files_dir / created.id).read_bytes() == content
    row = FileService(settings, Database(settings)).get(settings.organization_id, created.id)
    assert row.location == str(settings.files_dir / created.id)
    assert row.sha256 == hashlib.sha256(content).hexdigest()


def test_ids_that_look_like_paths_are_not_found(client, settings):
    client.files.create(file=("t.jsonl", jsonl(10)), purpose="fine-tune")
    for file_id in ("../openft.db", "..%2Fopenft.db", str(settings.data_dir / "openft.db")):
        with pytest.raises(openai.NotFoundError):
            client.files.content(file_id)


@pytest.mark.parametrize(
    ("given", "stored"),
    [
        ("train.jsonl", "train.jsonl"),
        ("../../etc/passwd", "passwd"),
        ("C:\\Users\\me\\data.jsonl", "data.jsonl"),
        ("evil\x00\x07\u202e.jsonl", "evil.jsonl"),
        ("line\nbreak.jsonl", "linebreak.jsonl"),
        ("..", "file"),
        ("dir/", "file"),
        (None, "file"),
        ("n" * 300, "n" * 255),
    ],
)
def test_filenames_are_sanitized(given, stored):
    assert sanitize_filename(given) == stored


def test_an_upload_that_breaks_midway_leaves_nothing(settings):
    class Broken(io.RawIOBase):
        def __init__(self):
            self.calls = 0

        def read(self, size=-1):
            self.calls += 1
            if self.calls > 1:
                raise ConnectionResetError("client went away")
            return b"x" * 100

    files = FileService(settings, Database(settings))
    with pytest.raises(ConnectionResetError):
        files.create(settings.organization_id, "t.jsonl", "assistants", Broken())
    assert stored_files(settings) == []
    assert files.list(settings.organization_id, None, 10, "desc", None) == ([], False)


def test_an_invalid_fine_tune_file_leaves_nothing(settings):
    files = FileService(settings, Database(settings))
    with pytest.raises(OpenFTError) as caught:
        files.create(settings.organization_id, "t.jsonl", "fine-tune", io.BytesIO(b"{not json\n"))
    assert caught.value.status == 400 and "Line 1" in caught.value.message
    assert stored_files(settings) == []
