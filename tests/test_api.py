"""The API's shapes and errors through the official client, in process (no worker, no model)."""

import json
import subprocess
import sys

import openai
import pytest
from openai.types import FileObject
from openai.types.fine_tuning import FineTuningJob, FineTuningJobEvent

from openft.models.store import ensure_bundled_model
from openft.server.app import create_app
from openft.settings import Settings
from openft.store.db import Database
from tests.helpers import in_process_client

SYSTEM = {"role": "system", "content": "You are terse."}


def example(i: int) -> dict:
    return {"messages": [SYSTEM, {"role": "user", "content": f"Q{i}?"}, {"role": "assistant", "content": f"A{i}."}]}


def jsonl(examples) -> bytes:
    return "".join(json.dumps(e) + "\n" for e in examples).encode()


@pytest.fixture
def client(data_dir) -> openai.OpenAI:
    settings = Settings(data_dir=data_dir)
    ensure_bundled_model(settings, Database(settings))
    return in_process_client(create_app(settings, run_worker=False))


def upload(client, content: bytes, name: str = "train.jsonl"):
    return client.files.create(file=(name, content), purpose="fine-tune")


def test_server_import_does_not_import_torch(tmp_path):
    """Nor does creating the app: the engine's torch work starts with the first chat request."""
    code = (
        "import sys, openft.inference.vllm; from openft.server.app import create_app; "
        f"from openft.settings import Settings; create_app(Settings(data_dir={str(tmp_path)!r}), run_worker=False); "
        "sys.exit('torch' in sys.modules or 'transformers' in sys.modules)"
    )
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_file_lifecycle_matches_openai_types(client):
    content = jsonl(example(i) for i in range(12))
    created = upload(client, content)
    assert isinstance(created, FileObject) and created.id.startswith("file-")
    assert (created.bytes, created.filename, created.purpose, created.status) == (
        len(content),
        "train.jsonl",
        "fine-tune",
        "processed",
    )
    assert client.files.retrieve(created.id) == created
    assert client.files.content(created.id).content == content
    assert [f.id for f in client.files.list().data] == [created.id]
    deleted = client.files.delete(created.id)
    assert deleted.deleted and deleted.id == created.id
    with pytest.raises(openai.NotFoundError):
        client.files.retrieve(created.id)


def test_files_list_paginates(client):
    ids = [upload(client, jsonl(example(i) for i in range(10))).id for _ in range(3)]
    first = client.files.list(limit=2, order="asc")
    assert [f.id for f in first.data] == ids[:2] and first.has_more
    rest = client.files.list(limit=2, order="asc", after=first.data[-1].id)
    assert [f.id for f in rest.data] == ids[2:] and not rest.has_more


def test_malformed_line_is_rejected_with_its_line_number_and_nothing_stored(client):
    content = jsonl(example(i) for i in range(11)) + b"{not json\n" + jsonl([example(99)])
    with pytest.raises(openai.BadRequestError) as caught:
        upload(client, content)
    error = caught.value.body
    assert "Line 12" in error["message"] and error["param"] == "file"
    assert client.files.list().data == []


def test_too_few_examples_fails_job_creation_with_openai_message(client):
    small = upload(client, jsonl(example(i) for i in range(4)))
    with pytest.raises(openai.BadRequestError) as caught:
        client.fine_tuning.jobs.create(training_file=small.id, model="gpt-3.5-turbo")
    assert caught.value.body["message"] == "Training file has 4 example(s), but must have at least 10 examples"
    assert caught.value.body["code"] == "invalid_n_examples"
    assert client.fine_tuning.jobs.list().data == []


def test_unknown_ids_are_404_in_openai_shape(client):
    with pytest.raises(openai.NotFoundError) as caught:
        client.fine_tuning.jobs.create(training_file="file-doesnotexist", model="gpt-3.5-turbo")
    assert caught.value.body["param"] == "training_file"
    with pytest.raises(openai.NotFoundError):
        client.fine_tuning.jobs.retrieve("ftjob-doesnotexist")
    with pytest.raises(openai.NotFoundError):
        client.files.content("file-doesnotexist")
    with pytest.raises(openai.NotFoundError) as caught:
        client.chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "hi"}])
    assert caught.value.code == "model_not_found"
    good = upload(client, jsonl(example(i) for i in range(10)))
    with pytest.raises(openai.NotFoundError) as caught:
        client.fine_tuning.jobs.create(training_file=good.id, model="no-such-base")
    assert caught.value.code == "model_not_found"


def test_invalid_parameters_are_400_with_param(client):
    good = upload(client, jsonl(example(i) for i in range(10)))
    with pytest.raises(openai.BadRequestError) as caught:
        client.fine_tuning.jobs.create(training_file=good.id, model="gpt-3.5-turbo", hyperparameters={"n_epochs": 0})
    assert caught.value.body["param"] == "hyperparameters.n_epochs"
    with pytest.raises(openai.BadRequestError) as caught:
        client.fine_tuning.jobs.create(training_file=good.id, model="gpt-3.5-turbo", suffix="bad:suffix")
    assert caught.value.body["param"] == "suffix"
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="gpt-3.5-turbo", messages=[])
    assert caught.value.body["param"] == "messages"
    assert client.fine_tuning.jobs.list().data == []


def test_job_creation_shape_and_events(client):
    training = upload(client, jsonl(example(i) for i in range(10)))
    job = client.fine_tuning.jobs.create(
        training_file=training.id, model="gpt-3.5-turbo", suffix="terse", hyperparameters={"n_epochs": 2}, seed=7
    )
    assert isinstance(job, FineTuningJob)
    assert job.id.startswith("ftjob-") and job.status == "validating_files"
    assert (job.model, job.seed, job.fine_tuned_model, job.training_file) == ("gpt-3.5-turbo", 7, None, training.id)
    assert job.hyperparameters.n_epochs == 2 and job.hyperparameters.batch_size == "auto"
    assert client.fine_tuning.jobs.retrieve(job.id) == job
    events = client.fine_tuning.jobs.list_events(job.id).data
    assert all(isinstance(e, FineTuningJobEvent) and e.id.startswith("ftevent-") for e in events)
    assert [e.message for e in events] == [
        f"Validating training file: {training.id}",
        f"Created fine-tuning job: {job.id}",
    ]
    cancelled = client.fine_tuning.jobs.cancel(job.id)
    assert cancelled.status == "cancelled"
    with pytest.raises(openai.BadRequestError):
        client.fine_tuning.jobs.cancel(job.id)


def test_models_list_base_and_aliases(client):
    models = {m.id: m for m in client.models.list().data}
    assert "SmolLM2-135M-Instruct" in models and "gpt-3.5-turbo" in models
    assert models["gpt-3.5-turbo"].model_extra["root"] == "SmolLM2-135M-Instruct"
    assert client.models.retrieve("gpt-4o-mini").id == "gpt-4o-mini"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("ft:gpt-3.5-turbo:personal::missing1")


def test_jobs_filter_by_metadata_and_accept_method(client):
    training = upload(client, jsonl(example(i) for i in range(10)))
    first = client.fine_tuning.jobs.create(training_file=training.id, model="gpt-3.5-turbo", metadata={"team": "a"})
    second = client.fine_tuning.jobs.create(
        training_file=training.id,
        model="gpt-3.5-turbo",
        metadata={"team": "b"},
        method={"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": 3, "batch_size": 2}}},
    )
    assert second.method.type == "supervised" and second.hyperparameters.n_epochs == 3
    assert [j.id for j in client.fine_tuning.jobs.list(metadata={"team": "a"}).data] == [first.id]
    assert [j.id for j in client.fine_tuning.jobs.list().data] == [second.id, first.id]
    page = client.fine_tuning.jobs.list(limit=1)
    assert [j.id for j in page.data] == [second.id] and page.has_more
    with pytest.raises(openai.BadRequestError):
        client.fine_tuning.jobs.create(
            training_file=training.id, model="gpt-3.5-turbo", metadata={f"k{i}": "v" for i in range(17)}
        )
