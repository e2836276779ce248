"""`POST /v1/openft/evals` in process, with a scripted engine: the prompts each arm sends, the
report's numbers, storage, OpenAI error shapes and organization isolation. (The real model is
evaluated in test_eval_workflow.py.)"""

import json

import openai
import pytest
from fastapi.testclient import TestClient
from rich.console import Console
from sqlalchemy import select

from openft.cli.evals import print_report
from openft.inference.engine import Chunk
from openft.models.store import register_base, register_fine_tune
from openft.server.app import create_app
from openft.services.keys import KeyService
from openft.settings import BUNDLED_MODEL, Settings
from openft.storage import Storage
from openft.store.db import Database
from openft.store.tables import JobRow

SYSTEM = {"role": "system", "content": "You are a pirate."}
MARK = "Ahoy matey!"


def example(question: str, answer: str, system=SYSTEM) -> dict:
    return {
        "messages": ([system] if system else [])
        + [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]
    }


def jsonl(examples) -> bytes:
    return "".join(json.dumps(e) + "\n" for e in examples).encode()


TRAINING = jsonl(example(f"Question {i}?", f"{MARK} Answer {i}.") for i in range(12))
HELD_OUT = jsonl([example("What is 1?", f"{MARK} One."), example("What is 2?", f"{MARK} Two.")])


class ScriptedEngine:
    """The fine-tune answers like the training data, but only with the system message; the base
    model answers plainly. One token per word; every call is recorded."""

    def __init__(self):
        self.calls = []

    def context_length(self, model):
        return 8192

    def count_prompt_tokens(self, model, prompt):
        return sum(len(m["content"].split()) for m in prompt.messages)

    def generate(self, model, prompt, params):
        self.calls.append((model.adapter_key, prompt.messages, params))
        question = prompt.messages[-1]["content"]
        number = {"What is 1?": "One.", "What is 2?": "Two."}.get(question, "Hm.")
        tuned = model.adapter_key and prompt.messages[0]["role"] == "system"
        text = f"{MARK} {number}" if tuned else f"The answer is {number.lower()}"
        words = text.split()[: params.max_tokens]
        yield Chunk(" ".join(words), "stop", self.count_prompt_tokens(model, prompt), len(words))


class Server:
    def __init__(self, root, keys: bool = False, storage_url: str | None = None):
        self.settings = Settings(data_dir=root, storage_url=storage_url)
        self.db = Database(self.settings)
        register_base(self.db, BUNDLED_MODEL)  # a name only: no weights
        self.keys = KeyService(self.settings, self.db)
        self.app = create_app(self.settings, run_worker=False)
        self.engine = ScriptedEngine()
        self.app.state.chat.engine = self.engine
        self.http = TestClient(self.app)

    def client(self, key: str = "sk-test") -> openai.OpenAI:
        return openai.OpenAI(base_url="http://testserver/v1", api_key=key, http_client=self.http, max_retries=0)

    def fine_tune(self, client: openai.OpenAI, data: bytes = TRAINING) -> tuple[str, str]:
        """A job on `data` whose fine-tune is registered as the worker would (no training)."""
        training = client.files.create(file=("train.jsonl", data), purpose="fine-tune")
        job = client.fine_tuning.jobs.create(training_file=training.id, model="gpt-3.5-turbo", suffix="ahoy")
        with self.db.session() as session:
            row = session.scalar(select(JobRow).where(JobRow.id == job.id))
            register_fine_tune(session, self.settings, row, row.planned_model_name, "/adapters/ahoy")
            row.status, row.fine_tuned_model = "succeeded", row.planned_model_name
        return row.planned_model_name, training.id


def create_eval(client: openai.OpenAI, **body) -> dict:
    return client.post("/openft/evals", body=body, cast_to=object)


@pytest.fixture
def server(tmp_path) -> Server:
    return Server(tmp_path / "data")


class JsonEngine(ScriptedEngine):
    """A JSON task: the fine-tune learned JSON but not the whole format (its answers lack "sure"),
    unless its reply is constrained; the base model answers in prose."""

    def generate(self, model, prompt, params):
        self.calls.append((model.adapter_key, prompt.messages, params))
        number = {"What is 1?": "One.", "What is 2?": "Two."}.get(prompt.messages[-1]["content"], "Hm.")
        if params.grammar is not None:
            text = json.dumps({"answer": number, "sure": True})
        elif model.adapter_key:
            text = json.dumps({"answer": number})
        else:
            text = f"The answer is {number.lower()}"
        yield Chunk(text, "stop", self.count_prompt_tokens(model, prompt), len(text.split()))


def test_a_json_task_is_scored_against_its_schema_with_and_without_constraining(server):
    server.engine = server.app.state.chat.engine = JsonEngine()
    client = server.client()
    answer = lambda text: json.dumps({"answer": text, "sure": True})  # noqa: E731
    training = jsonl(example(f"Question {i}?", answer(f"Answer {i}.")) for i in range(12))
    model, _ = server.fine_tune(client, training)
    held_out = jsonl([example("What is 1?", answer("One.")), example("What is 2?", answer("Two."))])
    file = client.files.create(file=("heldout.jsonl", held_out), purpose="evals")
    report = create_eval(client, model=model, file=file.id, shots=1, max_tokens=32)

    assert report["json_task"] is True
    schema = report["json_schema"]
    assert schema["properties"] == {"answer": {"type": "string"}, "sure": {"type": "boolean"}}
    assert sorted(schema["required"]) == ["answer", "sure"] and schema["additionalProperties"] is False
    arms = {arm["name"]: arm["metrics"] for arm in report["arms"]}
    assert list(arms)[-1] == "fine_tuned_constrained"
    assert (arms["fine_tuned"]["json_valid"], arms["fine_tuned"]["schema_valid"]) == (1.0, 0.0)
    assert (arms["fine_tuned_constrained"]["schema_valid"], arms["fine_tuned_constrained"]["exact_match"]) == (1, 1)
    assert arms["base_zero_shot"]["schema_valid"] == 0.0
    assert report["ranking"][0] == "fine_tuned_constrained"
    # Only the constrained arm's requests carried a grammar: the task's schema.
    constrained = [params.grammar for _, _, params in server.engine.calls if params.grammar]
    assert len(constrained) == 2 and all('"sure": {"type": "boolean"}' in grammar for grammar in constrained)


def test_report_compares_four_arms_and_ranks_the_fine_tune_first(server):
    client = server.client()
    model, training_id = server.fine_tune(client)
    held_out = client.files.create(file=("heldout.jsonl", HELD_OUT), purpose="evals")
    report = create_eval(client, model=model, file=held_out.id, shots=2, max_tokens=16)

    assert report["id"].startswith("eval-") and report["object"] == "openft.eval"
    assert (report["model"], report["base_model"], report["training_file"]) == (model, "gpt-3.5-turbo", training_id)
    assert report["system_message"] == SYSTEM["content"] and report["json_task"] is False
    arms = {arm["name"]: arm for arm in report["arms"]}
    assert list(arms) == ["base_zero_shot", "base_few_shot", "fine_tuned", "fine_tuned_no_system"]
    assert report["ranking"][0] == "fine_tuned"
    assert arms["fine_tuned"]["metrics"]["exact_match"] == 1.0
    assert arms["fine_tuned"]["samples"][0] == {
        "line": 1,
        "output": f"{MARK} One.",
        "exact_match": True,
        "similarity": 1.0,
    }
    assert (
        arms["base_zero_shot"]["metrics"]["exact_match"] == 0.0
        and arms["base_zero_shot"]["metrics"]["similarity"] < 0.5
    )
    assert arms["fine_tuned_no_system"]["metrics"]["exact_match"] == 0.0
    # Few-shot pays for its examples in every prompt; the fine-tune does not.
    few, zero, tuned = (arms[n]["metrics"] for n in ("base_few_shot", "base_zero_shot", "fine_tuned"))
    assert few["mean_prompt_tokens"] > zero["mean_prompt_tokens"] == tuned["mean_prompt_tokens"]
    assert arms["base_few_shot"]["shots"] == 2 and arms["fine_tuned"]["shots"] == 0
    # Same tokens cost more on a fine-tune at OpenAI (gpt-3.5-turbo: $0.50 vs $3.00 per 1M in).
    assert report["prices"]["model"] == "gpt-3.5-turbo" and report["prices"]["reference"] is False
    assert tuned["cost_per_1k_requests_usd"] > zero["cost_per_1k_requests_usd"] > 0
    assert all(arm["metrics"]["mean_latency_seconds"] >= 0 for arm in report["arms"])

    # The prompts each arm sent, in order (a 1-token warm-up leads each arm), at temperature 0.
    timed = [(adapter, messages) for adapter, messages, params in server.engine.calls if params.max_tokens == 16]
    assert all(params.temperature == 0 for _, _, params in server.engine.calls)
    user = {"role": "user", "content": "What is 1?"}
    shots = [
        {"role": "user", "content": "Question 0?"},
        {"role": "assistant", "content": f"{MARK} Answer 0."},
        {"role": "user", "content": "Question 1?"},
        {"role": "assistant", "content": f"{MARK} Answer 1."},
    ]
    assert [timed[i] for i in (0, 2, 4, 6)] == [
        (None, [SYSTEM, user]),
        (None, [SYSTEM, *shots, user]),
        ("/adapters/ahoy", [SYSTEM, user]),
        ("/adapters/ahoy", [user]),
    ]
    assert report["examples"][0] == {"line": 1, "prompt": [SYSTEM, user], "reference": f"{MARK} One."}

    # The CLI's table of the same report.
    console = Console(record=True, width=240)
    print_report(console, report)
    text = console.export_text()
    assert "Fine-tuned, system message ★" in text and "Ranking: Fine-tuned, system message > " in text
    assert "exact match" in text and "100%" in text and "valid JSON" not in text  # not a JSON task

    # Stored: listed and retrievable as it was returned.
    assert client.get(f"/openft/evals/{report['id']}", cast_to=object) == report
    listed = client.get("/openft/evals", cast_to=object)
    assert [e["id"] for e in listed["data"]] == [report["id"]] and listed["has_more"] is False


def test_a_training_file_can_be_given_and_json_answers_are_scored(server):
    client = server.client()
    model, _ = server.fine_tune(client)
    other = jsonl(
        example(f"Q{i}", '{"ok": true}', system={"role": "system", "content": "JSON only."}) for i in range(3)
    )
    training = client.files.create(file=("other.jsonl", other), purpose="fine-tune")
    held_out = client.files.create(
        file=("h.jsonl", jsonl([example("What is 1?", '{"n": 1}', system=None)])), purpose="evals"
    )
    report = create_eval(client, model=model, file=held_out.id, training_file=training.id, shots=10)
    assert report["training_file"] == training.id and report["system_message"] == "JSON only."
    assert report["shots"] == 3  # all the file has
    assert report["json_task"] is True
    assert all(arm["metrics"]["json_valid"] == 0.0 for arm in report["arms"])


def test_the_files_are_read_from_a_remote_storage(tmp_path):
    url = f"memory://openft-test/{tmp_path.name}"  # no local path: read through the storage
    server = Server(tmp_path / "data", storage_url=url)
    try:
        client = server.client()
        model, training_id = server.fine_tune(client)
        held_out = client.files.create(file=("heldout.jsonl", HELD_OUT), purpose="evals")
        report = create_eval(client, model=model, file=held_out.id, shots=1, max_tokens=16)
        assert report["training_file"] == training_id and report["system_message"] == SYSTEM["content"]
        assert [e["reference"] for e in report["examples"]] == [f"{MARK} One.", f"{MARK} Two."]
        assert not (tmp_path / "data" / "files").exists()
    finally:
        Storage(url).delete("")


def test_errors_have_openai_shapes(server):
    client = server.client()
    model, training_id = server.fine_tune(client)
    held_out = client.files.create(file=("h.jsonl", HELD_OUT), purpose="evals")
    with pytest.raises(openai.NotFoundError) as caught:
        create_eval(client, model="ft:gpt-3.5-turbo:personal::nope1234", file=held_out.id)
    assert caught.value.code == "model_not_found"
    with pytest.raises(openai.BadRequestError) as caught:
        create_eval(client, model="gpt-3.5-turbo", file=held_out.id)
    assert caught.value.param == "model" and "not a fine-tuned model" in caught.value.message
    with pytest.raises(openai.NotFoundError) as caught:
        create_eval(client, model=model, file="file-missing")
    assert caught.value.param == "file"
    no_reference = client.files.create(
        file=(
            "bad.jsonl",
            jsonl([example("q", "a")])
            + jsonl(
                [
                    {
                        "messages": [
                            {"role": "user", "content": "q"},
                            {"role": "assistant", "content": "a"},
                            {"role": "user", "content": "and?"},
                        ]
                    }
                ]
            ),
        ),
        purpose="evals",
    )
    with pytest.raises(openai.BadRequestError) as caught:
        create_eval(client, model=model, file=no_reference.id)
    assert caught.value.code == "invalid_file_format" and "Line 2: the last message" in caught.value.message
    not_chat = client.files.create(file=("x.jsonl", b"hello\n"), purpose="evals")
    with pytest.raises(openai.BadRequestError) as caught:
        create_eval(client, model=model, file=not_chat.id)
    assert caught.value.param == "file" and caught.value.code == "invalid_file_format"
    client.files.delete(training_id)
    with pytest.raises(openai.BadRequestError) as caught:
        create_eval(client, model=model, file=held_out.id)
    assert caught.value.param == "training_file" and "no longer stored" in caught.value.message
    for body in ({"model": model}, {"model": model, "file": held_out.id, "shots": -1}):
        with pytest.raises(openai.BadRequestError):
            create_eval(client, **body)
    with pytest.raises(openai.NotFoundError):
        client.get("/openft/evals/eval-missing", cast_to=object)
    assert server.engine.calls == []  # every error came before any inference


def test_another_organization_sees_no_eval_and_cannot_evaluate_the_fine_tune(server):
    a = server.client(server.keys.create("acme")[0])
    b = server.client(server.keys.create("globex")[0])
    model, _ = server.fine_tune(b)
    held_out = b.files.create(file=("h.jsonl", HELD_OUT), purpose="evals")
    report = create_eval(b, model=model, file=held_out.id, shots=1, max_tokens=8)
    with pytest.raises(openai.NotFoundError):
        a.get(f"/openft/evals/{report['id']}", cast_to=object)
    assert a.get("/openft/evals", cast_to=object)["data"] == []
    own = a.files.create(file=("h.jsonl", HELD_OUT), purpose="evals")
    with pytest.raises(openai.NotFoundError) as caught:
        create_eval(a, model=model, file=own.id)
    assert caught.value.code == "model_not_found"
