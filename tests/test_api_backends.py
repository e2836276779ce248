"""The API's store-backed paths on both backends (SQLite and PostgreSQL), in process: uploads,
jobs with a metadata filter (a JSON lookup in SQL), cursors, events, cancel, keys and
organizations, and the 404 for another organization's objects."""

import json

import openai
import pytest

from openft.models.store import ensure_bundled_model
from openft.server.app import create_app
from openft.services.keys import KeyService
from openft.settings import Settings
from openft.store.db import Database
from tests.helpers import in_process_client

EXAMPLE = {"messages": [{"role": "user", "content": "Q?"}, {"role": "assistant", "content": "A."}]}
TRAINING = (json.dumps(EXAMPLE) + "\n").encode() * 10


@pytest.fixture
def settings(db_url, data_dir) -> Settings:
    settings = Settings(data_dir=data_dir, db_url=db_url)
    ensure_bundled_model(settings, Database(settings))
    return settings


def client_for(settings: Settings, key: str) -> openai.OpenAI:
    return in_process_client(create_app(settings, run_worker=False), key)


def test_files_jobs_events_and_cancel(settings):
    client = client_for(settings, "sk-test")
    training = client.files.create(file=("t.jsonl", TRAINING), purpose="fine-tune")
    assert client.files.content(training.id).content == TRAINING
    first = client.fine_tuning.jobs.create(training_file=training.id, model="gpt-3.5-turbo", metadata={"team": "a"})
    second = client.fine_tuning.jobs.create(training_file=training.id, model="gpt-3.5-turbo", metadata={"team": "b"})
    assert [j.id for j in client.fine_tuning.jobs.list(metadata={"team": "a"}).data] == [first.id]
    page = client.fine_tuning.jobs.list(limit=1)
    assert [j.id for j in page.data] == [second.id] and page.has_more
    assert [j.id for j in client.fine_tuning.jobs.list(after=second.id).data] == [first.id]
    events = client.fine_tuning.jobs.list_events(first.id).data
    assert [e.message for e in events][-1] == f"Created fine-tuning job: {first.id}"
    assert client.fine_tuning.jobs.cancel(first.id).status == "cancelled"
    with pytest.raises(openai.BadRequestError):
        client.fine_tuning.jobs.cancel(first.id)
    assert client.files.delete(training.id).deleted
    with pytest.raises(openai.NotFoundError):
        client.files.retrieve(training.id)


def test_organizations_see_only_their_own(settings):
    db = Database(settings)
    acme, _, _ = KeyService(settings, db).create("acme")
    globex, _, _ = KeyService(settings, db).create("globex")
    training = client_for(settings, acme).files.create(file=("t.jsonl", TRAINING), purpose="fine-tune")
    with pytest.raises(openai.NotFoundError):
        client_for(settings, globex).files.retrieve(training.id)
    with pytest.raises(openai.AuthenticationError):
        client_for(settings, "sk-wrong").files.list()
