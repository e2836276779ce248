"""Organizations and API keys, in process: org A can neither see, use, cancel, delete nor chat
with anything of org B (404, as if absent), and every /v1 route needs a live key once one exists.

Fine-tuned models are inserted through the store (training is tested elsewhere), so no test here
loads a model: chat with another org's fine-tune must fail before any inference.
"""

import hashlib
import json
import time

import openai
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from openft import ids
from openft.errors import OpenFTError
from openft.models.store import register_base, register_fine_tune
from openft.server.app import create_app
from openft.services.keys import KeyService
from openft.settings import BUNDLED_MODEL, Settings
from openft.store.db import Database
from openft.store.tables import ApiKeyRow, CheckpointRow, JobRow, ModelRow

SYSTEM = {"role": "system", "content": "You are terse."}
HELLO = [{"role": "user", "content": "hi"}]


def jsonl(n: int) -> bytes:
    examples = (
        {"messages": [SYSTEM, {"role": "user", "content": f"Q{i}?"}, {"role": "assistant", "content": f"A{i}."}]}
        for i in range(n)
    )
    return "".join(json.dumps(e) + "\n" for e in examples).encode()


class NoInference:
    """Stands in for the engine: any use fails the test."""

    def __getattr__(self, name):
        raise AssertionError(f"inference was reached ({name})")


class Server:
    def __init__(self, root, **overrides):
        self.settings = Settings(data_dir=root, **overrides)
        self.db = Database(self.settings)
        register_base(self.db, BUNDLED_MODEL)  # a name only: no weights needed
        self.keys = KeyService(self.settings, self.db)
        self.app = create_app(self.settings, run_worker=False)
        self.app.state.chat.engine = NoInference()
        self.http = TestClient(self.app)

    def client(self, key: str) -> openai.OpenAI:
        return openai.OpenAI(base_url="http://testserver/v1", api_key=key, http_client=self.http, max_retries=0)

    def fine_tune(self, job_id: str, name: str) -> None:
        """Register `name` as the job's fine-tuned model and one checkpoint, as the worker would."""
        with self.db.session() as session:
            job = session.scalar(select(JobRow).where(JobRow.id == job_id))
            register_fine_tune(session, self.settings, job, name, "/nonexistent/adapter")
            register_fine_tune(session, self.settings, job, name + ":ckpt-step-10", "/nonexistent/adapter-10")
            session.add(
                CheckpointRow(
                    id=ids.checkpoint_id(),
                    job_id=job.id,
                    created_at=int(time.time()),
                    fine_tuned_model_checkpoint=name + ":ckpt-step-10",
                    step_number=10,
                    metrics={},
                )
            )


@pytest.fixture
def server(tmp_path) -> Server:
    return Server(tmp_path / "data")


@pytest.fixture
def two_orgs(server):
    """Clients for acme (A) and globex (B); B owns a file, a job, a fine-tune and a checkpoint."""
    a = server.client(server.keys.create("acme")[0])
    b = server.client(server.keys.create("globex")[0])
    file = b.files.create(file=("b.jsonl", jsonl(10)), purpose="fine-tune")
    job = b.fine_tuning.jobs.create(training_file=file.id, model="gpt-3.5-turbo", suffix="b")
    with server.db.session() as session:
        planned = session.scalar(select(JobRow.planned_model_name).where(JobRow.id == job.id))
    server.fine_tune(job.id, planned)
    return a, b, file, job, planned


# ---------------------------------------------------------------------------------------------
# Organizations own their data


def test_fine_tuned_names_and_owner_are_the_callers_org(server, two_orgs):
    _, b, _, job, model = two_orgs
    assert model.startswith("ft:gpt-3.5-turbo:globex:b:")
    assert b.models.retrieve(model).owned_by == "globex"
    assert b.fine_tuning.jobs.retrieve(job.id).organization_id.startswith("org-")


def test_org_a_cannot_touch_org_b_files(two_orgs):
    a, b, file, _, _ = two_orgs
    for attempt in (
        lambda: a.files.retrieve(file.id),
        lambda: a.files.content(file.id),
        lambda: a.files.delete(file.id),
        lambda: a.files.list(after=file.id),
    ):
        with pytest.raises(openai.NotFoundError):
            attempt()
    assert a.files.list().data == []
    assert [f.id for f in b.files.list().data] == [file.id]
    assert b.files.content(file.id).content == jsonl(10)


def test_org_a_cannot_touch_org_b_jobs(two_orgs):
    a, b, file, job, _ = two_orgs
    for attempt in (
        lambda: a.fine_tuning.jobs.retrieve(job.id),
        lambda: a.fine_tuning.jobs.cancel(job.id),
        lambda: a.fine_tuning.jobs.pause(job.id),
        lambda: a.fine_tuning.jobs.resume(job.id),
        lambda: a.fine_tuning.jobs.list_events(job.id),
        lambda: a.fine_tuning.jobs.checkpoints.list(job.id),
        lambda: a.fine_tuning.jobs.list(after=job.id),
    ):
        with pytest.raises(openai.NotFoundError) as caught:
            attempt()
        assert caught.value.code == "fine_tune_not_found"
    own = a.files.create(file=("a.jsonl", jsonl(10)), purpose="fine-tune")
    for files in ({"training_file": file.id}, {"training_file": own.id, "validation_file": file.id}):
        with pytest.raises(openai.NotFoundError) as caught:
            a.fine_tuning.jobs.create(model="gpt-3.5-turbo", **files)
        assert caught.value.param == list(files)[-1]
    assert a.fine_tuning.jobs.list().data == []
    # B's job is untouched and still B's to see.
    assert b.fine_tuning.jobs.retrieve(job.id).status == "validating_files"
    assert len(b.fine_tuning.jobs.checkpoints.list(job.id).data) == 1
    assert len(b.fine_tuning.jobs.list_events(job.id).data) == 2


def test_org_a_cannot_see_use_or_delete_org_b_models(two_orgs):
    a, b, _, _, model = two_orgs
    checkpoint = model + ":ckpt-step-10"
    for name in (model, checkpoint):
        for attempt in (
            lambda name: a.models.retrieve(name),
            lambda name: a.models.delete(name),
            lambda name: a.chat.completions.create(model=name, messages=HELLO),
            lambda name: a.chat.completions.create(model=name, messages=HELLO, stream=True),
        ):
            with pytest.raises(openai.NotFoundError) as caught:
                attempt(name)
            assert caught.value.code == "model_not_found"
    a_models = {m.id for m in a.models.list().data}
    assert BUNDLED_MODEL in a_models and "gpt-3.5-turbo" in a_models
    assert not any(name.startswith("ft:") for name in a_models)
    assert {model, checkpoint} <= {m.id for m in b.models.list().data}


def test_a_model_grader_reaches_only_its_own_orgs_models(two_orgs):
    a, b, _, _, model = two_orgs
    grader = {
        "type": "score_model",
        "name": "judge",
        "model": model,
        "input": [{"role": "user", "content": "Grade {{ sample.output_text }}"}],
    }
    for call in (a.fine_tuning.alpha.graders.validate, a.fine_tuning.alpha.graders.run):
        with pytest.raises(openai.BadRequestError) as caught:
            call(grader=grader, **({"model_sample": "x"} if call == a.fine_tuning.alpha.graders.run else {}))
        assert (caught.value.param, caught.value.code) == ("grader.model", "model_not_found")
    assert b.fine_tuning.alpha.graders.validate(grader=grader).grader.model == model
    # B's own fine-tune gets past the check, to the engine (which this server does not have).
    reached = b.fine_tuning.alpha.graders.run(grader=grader, model_sample="x").metadata.errors
    assert "inference was reached" in reached.api_model_grader_server_error_details


def test_a_job_goes_on_from_a_fine_tune_only_of_its_own_org(server, two_orgs):
    a, b, file, _, model = two_orgs
    own = a.files.create(file=("a.jsonl", jsonl(10)), purpose="fine-tune")
    for name in (model, model + ":ckpt-step-10"):
        with pytest.raises(openai.NotFoundError) as caught:
            a.fine_tuning.jobs.create(model=name, training_file=own.id)
        assert caught.value.code == "model_not_found"
    for name, adapter in ((model, "/nonexistent/adapter"), (model + ":ckpt-step-10", "/nonexistent/adapter-10")):
        again = b.fine_tuning.jobs.create(model=name, training_file=file.id, suffix="again")
        assert again.model == name  # echoed as asked
        with server.db.session() as session:
            row = session.scalar(select(JobRow).where(JobRow.id == again.id))
        # named after the root base as the client first named it, and starting from the adapter
        assert row.planned_model_name.startswith("ft:gpt-3.5-turbo:globex:again:")
        assert (row.base_model, row.initial_adapter_key) == (BUNDLED_MODEL, adapter)


def test_owner_deletes_its_fine_tune_but_no_one_deletes_a_base_model(two_orgs):
    a, b, _, _, model = two_orgs
    deleted = b.models.delete(model)
    assert (deleted.id, deleted.object, deleted.deleted) == (model, "model", True)
    with pytest.raises(openai.NotFoundError):
        b.models.retrieve(model)
    for client in (a, b):
        for base in (BUNDLED_MODEL, "gpt-3.5-turbo"):
            with pytest.raises(openai.PermissionDeniedError) as caught:
                client.models.delete(base)
            assert "base model" in caught.value.message
        assert client.models.retrieve(BUNDLED_MODEL).id == BUNDLED_MODEL


# ---------------------------------------------------------------------------------------------
# API keys


def test_every_v1_route_needs_a_key_once_one_exists(server):
    server.keys.create("acme")
    paths = server.app.openapi()["paths"]
    routes = [(path, method) for path, methods in paths.items() if path.startswith("/v1") for method in methods]
    assert len(routes) >= 14
    for path, method in routes:
        url = path.replace("{model}", "m").replace("{file_id}", "file-x").replace("{job_id}", "ftjob-x")
        response = server.http.request(method, url)
        assert response.status_code == 401, (method, path, response.text)
        assert response.json()["error"]["message"].startswith("You didn't provide an API key")


def test_wrong_and_revoked_keys_are_401_invalid_api_key(server):
    good, row, _ = server.keys.create("acme")
    kept = server.keys.create("acme")[0]
    assert server.client(good).models.list().data
    server.keys.revoke(row.id)
    for key in ("sk-wrong-key-123456", good):
        with pytest.raises(openai.AuthenticationError) as caught:
            server.client(key).models.list()
        assert caught.value.code == "invalid_api_key"
        assert key not in caught.value.message  # masked
    assert server.client(kept).models.list().data


def test_revoking_the_last_key_keeps_the_server_locked(server):
    key, row, _ = server.keys.create("acme")
    server.keys.revoke(row.id)
    response = server.http.get("/v1/models")
    assert response.status_code == 401
    with pytest.raises(openai.AuthenticationError):
        server.client(key).models.list()


def test_keys_are_stored_hashed(server):
    key, row, org = server.keys.create("acme")
    assert key.startswith("sk-openft-") and org.id.startswith("org-") and row.id.startswith("key_")
    with server.db.session() as session:
        stored = session.scalar(select(ApiKeyRow).where(ApiKeyRow.id == row.id))
    assert stored.key_hash == hashlib.sha256(key.encode()).hexdigest()
    assert key not in (server.settings.data_dir / "openft.db").read_bytes().decode("latin-1")


def test_without_keys_any_caller_is_the_local_organization(server):
    client = server.client("anything")
    file = client.files.create(file=("t.jsonl", jsonl(10)), purpose="fine-tune")
    job = client.fine_tuning.jobs.create(training_file=file.id, model="gpt-3.5-turbo")
    assert job.organization_id == server.settings.organization_id
    assert server.http.get("/v1/models").status_code == 200  # no Authorization header at all
    # A key for the local organization's name keeps what was made before keys existed.
    key = server.keys.create(server.settings.organization)[0]
    assert [f.id for f in server.client(key).files.list().data] == [file.id]
    with pytest.raises(openai.AuthenticationError):
        client.files.list()


def test_configured_api_keys_act_for_the_local_organization(tmp_path):
    server = Server(tmp_path / "data", api_keys=["sk-from-env"])
    assert server.client("sk-from-env").models.list().data
    with pytest.raises(openai.AuthenticationError):
        server.client("sk-other").models.list()


def test_organization_names_must_fit_model_names(server):
    for bad in ("Acme", "a:b", "", "-x", "a" * 65):
        with pytest.raises(OpenFTError, match="Organization names"):
            server.keys.create(bad)


def test_register_fine_tune_records_the_jobs_organization(server, two_orgs):
    _, _, _, job, model = two_orgs
    with server.db.session() as session:
        row = session.scalar(select(ModelRow).where(ModelRow.id == model))
        job_row = session.scalar(select(JobRow).where(JobRow.id == job.id))
    assert row.organization_id == job_row.organization_id and row.owned_by == "globex"
