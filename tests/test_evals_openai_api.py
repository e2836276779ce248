"""OpenAI's Evals API (`client.evals.*`) in process, with a scripted engine: the objects' shapes,
paging, the runner's results against a direct computation, every bad input as a 400 with its
`param` (nothing stored), per-row errors, and organization isolation. The bundled model, a
cancel and a server restart mid-run are in test_evals_openai_live.py."""

import asyncio
import json
import time

import openai
import pytest
from fastapi.testclient import TestClient

from openft.inference.engine import Chunk
from openft.models.store import register_base
from openft.runner import eval_runs
from openft.server.app import create_app
from openft.services.eval_runner import EvalRunner
from openft.services.keys import KeyService
from openft.settings import BUNDLED_MODEL, Settings
from openft.store.db import Database

QUESTIONS = {"Capital of France?": "Paris", "Two plus two?": "4", "Colour of the sky?": "blue"}
ITEM_SCHEMA = {
    "type": "object",
    "properties": {"question": {"type": "string"}, "answer": {"type": "string"}},
    "required": ["question", "answer"],
}
STRING_CHECK = {
    "type": "string_check",
    "name": "exact",
    "input": "{{ sample.output_text }}",
    "reference": "{{ item.answer }}",
    "operation": "eq",
}
SIMILARITY = {
    "type": "text_similarity",
    "name": "close",
    "input": "{{ sample.output_text }}",
    "reference": "{{ item.answer }}",
    "evaluation_metric": "fuzzy_match",
    "pass_threshold": 0.8,
}
TEMPLATE = {"type": "template", "template": [{"role": "user", "content": "{{ item.question }}"}]}


class AnsweringEngine:
    """Answers the known questions right, except the sky (wrong: "grey"); one token per word."""

    def context_length(self, model):
        return 8192

    def count_prompt_tokens(self, model, prompt):
        return sum(len(str(m["content"]).split()) for m in prompt.messages)

    def generate(self, model, prompt, params):
        question = prompt.messages[-1]["content"]
        answer = {"Colour of the sky?": "grey"}.get(question) or QUESTIONS.get(question, "no idea")
        yield Chunk(answer, "stop", self.count_prompt_tokens(model, prompt), len(answer.split()))


class Server:
    def __init__(self, root):
        self.settings = Settings(data_dir=root)
        self.db = Database(self.settings)
        register_base(self.db, BUNDLED_MODEL)  # a name only: the engine is scripted
        self.keys = KeyService(self.settings, self.db)
        self.app = create_app(self.settings, run_worker=False)
        self.app.state.chat.engine = AnsweringEngine()
        self.http = TestClient(self.app)

    def client(self, key: str = "sk-test") -> openai.OpenAI:
        return openai.OpenAI(base_url="http://testserver/v1", api_key=key, http_client=self.http, max_retries=0)

    def run_queue(self) -> None:
        """What the server's eval runner does in the background: every queued run, graded."""
        runner = EvalRunner(self.settings, self.db, self.app.state.chat, self.app.state.graders)
        while asyncio.run(runner.run_once(asyncio.Event())):
            pass


@pytest.fixture
def server(tmp_path) -> Server:
    return Server(tmp_path / "data")


def rows(with_samples: bool = True) -> list[dict]:
    return [
        {
            "item": {"question": q, "answer": a},
            **({"sample": {"output_text": a if q != "Two plus two?" else "5"}} if with_samples else {}),
        }
        for q, a in QUESTIONS.items()
    ]


def custom_eval(client, *criteria, **config):
    return client.evals.create(
        name="capitals",
        data_source_config={"type": "custom", "item_schema": ITEM_SCHEMA, **config},
        testing_criteria=list(criteria or (STRING_CHECK, SIMILARITY)),
        metadata={"team": "qa"},
    )


def test_an_eval_is_created_read_updated_listed_and_deleted(server):
    client = server.client()
    created = custom_eval(client, include_sample_schema=True)
    assert created.id.startswith("eval_") and created.object == "eval"
    schema = created.data_source_config.schema_
    assert schema["properties"]["item"] == ITEM_SCHEMA and schema["required"] == ["item", "sample"]
    ids = [criterion.id for criterion in created.testing_criteria]
    assert ids[0].startswith("exact-") and ids[1].startswith("close-")
    assert client.evals.retrieve(created.id).model_dump() == created.model_dump()
    updated = client.evals.update(created.id, name="renamed", metadata={"team": "ml"})
    assert (updated.name, updated.metadata) == ("renamed", {"team": "ml"})
    second = custom_eval(client)
    assert [e.id for e in client.evals.list()] == [created.id, second.id]
    assert [e.id for e in client.evals.list(order="desc", limit=1)] == [second.id, created.id]  # auto-paged
    first_page = client.evals.list(limit=1)
    assert first_page.has_more and [e.id for e in first_page.data] == [created.id]
    deleted = client.evals.delete(created.id)
    assert (deleted.deleted, deleted.eval_id, deleted.object) == (True, created.id, "eval.deleted")
    with pytest.raises(openai.NotFoundError):
        client.evals.retrieve(created.id)


def test_a_jsonl_run_grades_the_rows_samples_as_a_direct_computation_does(server):
    client = server.client()
    evaluation = custom_eval(client)
    run = client.evals.runs.create(
        evaluation.id,
        name="given",
        data_source={"type": "jsonl", "source": {"type": "file_content", "content": rows()}},
    )
    assert run.status == "queued" and run.id.startswith("evalrun_")
    assert run.report_url.endswith(f"/evals/{evaluation.id}/runs/{run.id}")
    server.run_queue()
    run = client.evals.runs.retrieve(run.id, eval_id=evaluation.id)
    assert run.status == "completed" and run.model is None
    assert run.result_counts.model_dump() == {"total": 3, "errored": 0, "failed": 1, "passed": 2}
    exact, close = (criterion.id for criterion in evaluation.testing_criteria)
    assert [r.model_dump() for r in run.per_testing_criteria_results] == [
        {"testing_criteria": exact, "passed": 2, "failed": 1},
        {"testing_criteria": close, "passed": 2, "failed": 1},
    ]
    assert run.per_model_usage == []
    items = client.evals.runs.output_items.list(run.id, eval_id=evaluation.id).data
    assert [item.datasource_item_id for item in items] == [0, 1, 2]
    assert [item.status for item in items] == ["pass", "fail", "pass"]
    wrong = items[1]
    assert wrong.datasource_item == {"question": "Two plus two?", "answer": "4"}
    assert [(r.name, r.score, r.passed) for r in wrong.results] == [("exact", 0.0, False), ("close", 0.0, False)]
    failed = client.evals.runs.output_items.list(run.id, eval_id=evaluation.id, status="fail").data
    assert [item.id for item in failed] == [wrong.id]
    again = client.evals.runs.output_items.retrieve(wrong.id, eval_id=evaluation.id, run_id=run.id)
    assert again.model_dump() == wrong.model_dump()


def test_a_completions_run_samples_the_model_and_counts_its_usage(server):
    client = server.client()
    evaluation = custom_eval(client)
    upload = client.files.create(
        file=("rows.jsonl", "".join(json.dumps(row) + "\n" for row in rows(with_samples=False)).encode()),
        purpose="evals",
    )
    run = client.evals.runs.create(
        evaluation.id,
        data_source={
            "type": "completions",
            "model": BUNDLED_MODEL,
            "source": {"type": "file_id", "id": upload.id},
            "input_messages": TEMPLATE,
            "sampling_params": {"temperature": 0, "max_completion_tokens": 8},
        },
    )
    server.run_queue()
    run = client.evals.runs.retrieve(run.id, eval_id=evaluation.id)
    assert (run.status, run.model) == ("completed", BUNDLED_MODEL)
    assert run.result_counts.model_dump() == {"total": 3, "errored": 0, "failed": 1, "passed": 2}
    usage = run.per_model_usage[0]
    assert (usage.run_model_name, usage.invocation_count, usage.completion_tokens) == (BUNDLED_MODEL, 3, 3)
    sky = client.evals.runs.output_items.list(run.id, eval_id=evaluation.id).data[2]
    assert sky.sample.input[0].content == "Colour of the sky?" and sky.sample.output[0].content == "grey"
    assert (sky.sample.temperature, sky.sample.max_completion_tokens, sky.sample.seed) == (0, 8, 42)
    assert sky.status == "fail"


def test_a_row_missing_a_template_variable_is_an_errored_item(server):
    client = server.client()
    evaluation = client.evals.create(
        data_source_config={"type": "custom", "item_schema": {"type": "object"}}, testing_criteria=[STRING_CHECK]
    )
    content = [{"item": {"question": "Two plus two?", "answer": "4"}}, {"item": {"answer": "4"}}]
    run = client.evals.runs.create(
        evaluation.id,
        data_source={
            "type": "completions",
            "model": BUNDLED_MODEL,
            "source": {"type": "file_content", "content": content},
            "input_messages": TEMPLATE,
        },
    )
    server.run_queue()
    run = client.evals.runs.retrieve(run.id, eval_id=evaluation.id)
    assert run.result_counts.model_dump() == {"total": 2, "errored": 1, "failed": 0, "passed": 1}
    errored = client.evals.runs.output_items.list(run.id, eval_id=evaluation.id, status="error").data[0]
    assert errored.sample.error.code == "invalid_variable_error"


def test_stored_completions_are_graded_as_they_were_answered(server):
    client = server.client()
    for question in QUESTIONS:
        client.chat.completions.create(
            model=BUNDLED_MODEL, messages=[{"role": "user", "content": question}], store=True, metadata={"app": "quiz"}
        )
    client.chat.completions.create(
        model=BUNDLED_MODEL, messages=[{"role": "user", "content": "Two plus two?"}], store=True
    )
    evaluation = client.evals.create(
        data_source_config={"type": "logs", "metadata": {"app": "quiz"}},
        testing_criteria=[{**STRING_CHECK, "reference": "blue", "operation": "ne"}],
    )
    assert evaluation.data_source_config.type == "logs"
    run = client.evals.runs.create(
        evaluation.id,
        data_source={"type": "completions", "source": {"type": "stored_completions"}},  # the eval's metadata
    )
    server.run_queue()
    run = client.evals.runs.retrieve(run.id, eval_id=evaluation.id)
    assert run.result_counts.model_dump() == {"total": 3, "errored": 0, "failed": 0, "passed": 3}
    items = client.evals.runs.output_items.list(run.id, eval_id=evaluation.id).data
    assert [item.datasource_item["output_text"] for item in items] == ["Paris", "4", "grey"]


def bad(client, call, param: str, *args, **kwargs) -> str:
    with pytest.raises(openai.BadRequestError) as caught:
        call(*args, **kwargs)
    assert caught.value.body["param"] == param, caught.value.body
    return caught.value.body["message"]


def test_bad_input_is_a_400_naming_its_param_and_stores_nothing(server):
    client = server.client()
    config = {"type": "custom", "item_schema": ITEM_SCHEMA}
    create = client.evals.create
    bad(client, create, "testing_criteria[0].type", data_source_config=config, testing_criteria=[{"type": "vibes"}])
    bad(
        client,
        create,
        "testing_criteria[1].type",
        data_source_config=config,
        testing_criteria=[STRING_CHECK, {"type": "multi", "graders": {}}],
    )
    broken = {**STRING_CHECK, "input": "{{ sample.output_text"}
    assert "`{{`" in bad(
        client, create, "testing_criteria[0].input", data_source_config=config, testing_criteria=[broken]
    )
    no_threshold = {k: v for k, v in SIMILARITY.items() if k != "pass_threshold"}
    bad(
        client, create, "testing_criteria[0].pass_threshold", data_source_config=config, testing_criteria=[no_threshold]
    )
    judge = {
        "type": "score_model",
        "name": "judge",
        "model": "ft:nope:acme::x",
        "input": [{"role": "user", "content": "?"}],
    }
    bad(client, create, "testing_criteria[0].model", data_source_config=config, testing_criteria=[judge])
    bad_schema = {"type": "custom", "item_schema": {"type": "objekt"}}
    bad(
        client, create, "data_source_config.item_schema", data_source_config=bad_schema, testing_criteria=[STRING_CHECK]
    )
    bad(client, create, "data_source_config.type", data_source_config={"type": "sql"}, testing_criteria=[STRING_CHECK])
    assert client.evals.list().data == []

    evaluation = custom_eval(client)
    runs = client.evals.runs
    content = rows()
    content[1] = {"item": {"question": "Two plus two?", "answer": 4}}
    message = bad(
        client,
        runs.create,
        "data_source.source.content[1].item",
        evaluation.id,
        data_source={"type": "jsonl", "source": {"type": "file_content", "content": content}},
    )
    assert "answer" in message
    upload = client.files.create(
        file=("rows.jsonl", b'{"item": {"question": "q", "answer": "a"}}\n{"item": {"question": "q"}}\n'),
        purpose="evals",
    )
    assert "Row 1" in bad(
        client,
        runs.create,
        "data_source.source.id",
        evaluation.id,
        data_source={"type": "jsonl", "source": {"type": "file_id", "id": upload.id}},
    )
    good_source = {"type": "file_content", "content": rows(with_samples=False)}
    completions = {"type": "completions", "model": BUNDLED_MODEL, "source": good_source, "input_messages": TEMPLATE}
    bad(
        client,
        runs.create,
        "data_source.input_messages.template[0].content",
        evaluation.id,
        data_source={
            **completions,
            "input_messages": {"type": "template", "template": [{"role": "user", "content": "{{ question }}"}]},
        },
    )
    bad(
        client,
        runs.create,
        "data_source.sampling_params.temperature",
        evaluation.id,
        data_source={**completions, "sampling_params": {"temperature": 9}},
    )
    bad(
        client,
        runs.create,
        "data_source.sampling_params.response_format.json_schema",
        evaluation.id,
        data_source={**completions, "sampling_params": {"response_format": {"type": "json_schema"}}},
    )
    bad(
        client, runs.create, "data_source.type", evaluation.id, data_source={"type": "responses", "source": good_source}
    )
    with pytest.raises(openai.NotFoundError):
        runs.create(evaluation.id, data_source={**completions, "model": "ft:nope:org::x"})
    with pytest.raises(openai.NotFoundError):
        runs.create(evaluation.id, data_source={"type": "jsonl", "source": {"type": "file_id", "id": "file-nope"}})
    assert runs.list(evaluation.id).data == []


def test_a_run_is_canceled_and_deleted_with_its_items(server):
    client = server.client()
    evaluation = custom_eval(client)
    source = {"type": "jsonl", "source": {"type": "file_content", "content": rows()}}
    queued = client.evals.runs.create(evaluation.id, data_source=source)
    canceled = client.evals.runs.cancel(queued.id, eval_id=evaluation.id)
    assert canceled.status == "canceled"
    server.run_queue()  # a canceled run is never graded
    assert client.evals.runs.output_items.list(queued.id, eval_id=evaluation.id).data == []
    with pytest.raises(openai.BadRequestError):
        client.evals.runs.cancel(queued.id, eval_id=evaluation.id)
    graded = client.evals.runs.create(evaluation.id, data_source=source)
    server.run_queue()
    assert [r.id for r in client.evals.runs.list(evaluation.id, status="completed")] == [graded.id]
    deleted = client.evals.runs.delete(graded.id, eval_id=evaluation.id)
    assert (deleted.deleted, deleted.run_id) == (True, graded.id)
    with pytest.raises(openai.NotFoundError):
        client.evals.runs.output_items.list(graded.id, eval_id=evaluation.id)
    assert [r.id for r in client.evals.runs.list(evaluation.id)] == [queued.id]


def test_another_organization_sees_none_of_an_eval_its_runs_or_files(server):
    a = server.client(server.keys.create("acme")[0])
    b = server.client(server.keys.create("globex")[0])
    evaluation = custom_eval(b)
    run = b.evals.runs.create(
        evaluation.id, data_source={"type": "jsonl", "source": {"type": "file_content", "content": rows()}}
    )
    server.run_queue()
    item = b.evals.runs.output_items.list(run.id, eval_id=evaluation.id).data[0]
    assert a.evals.list().data == []
    for call in (
        lambda: a.evals.retrieve(evaluation.id),
        lambda: a.evals.update(evaluation.id, name="mine"),
        lambda: a.evals.delete(evaluation.id),
        lambda: a.evals.runs.retrieve(run.id, eval_id=evaluation.id),
        lambda: a.evals.runs.cancel(run.id, eval_id=evaluation.id),
        lambda: a.evals.runs.output_items.retrieve(item.id, eval_id=evaluation.id, run_id=run.id),
    ):
        with pytest.raises(openai.NotFoundError):
            call()
    upload = b.files.create(file=("rows.jsonl", b'{"item": {"question": "q", "answer": "a"}}\n'), purpose="evals")
    own = custom_eval(a)
    with pytest.raises(openai.NotFoundError):
        a.evals.runs.create(own.id, data_source={"type": "jsonl", "source": {"type": "file_id", "id": upload.id}})
    assert b.evals.retrieve(evaluation.id).name == "capitals"


class SlowEngine(AnsweringEngine):
    def generate(self, model, prompt, params):
        time.sleep(0.2)
        yield from super().generate(model, prompt, params)


def completions_source(n: int) -> dict:
    content = (rows(with_samples=False) * n)[:n]
    return {
        "type": "completions",
        "model": BUNDLED_MODEL,
        "source": {"type": "file_content", "content": content},
        "input_messages": TEMPLATE,
    }


def test_a_run_stopped_with_its_server_goes_on_in_the_next_runner(server):
    """What the server's lifespan does when it stops (the runner's stop event), then a new
    server's runner: no row is lost or graded twice."""
    server.app.state.chat.engine = SlowEngine()
    client = server.client()
    evaluation = custom_eval(client)
    run = client.evals.runs.create(evaluation.id, data_source=completions_source(40))

    async def stop_when_graded(stop: asyncio.Event) -> None:
        runner = EvalRunner(server.settings, server.db, server.app.state.chat, server.app.state.graders)
        running = asyncio.create_task(runner.run_forever(stop))
        while not client.evals.runs.output_items.list(run.id, eval_id=evaluation.id).data:
            await asyncio.sleep(0.02)
        stop.set()
        await running

    asyncio.run(stop_when_graded(asyncio.Event()))
    stopped = client.evals.runs.retrieve(run.id, eval_id=evaluation.id)
    before = {item.id for item in client.evals.runs.output_items.list(run.id, eval_id=evaluation.id)}
    assert stopped.status == "queued" and 0 < stopped.result_counts.total == len(before) < 40
    server.run_queue()
    run = client.evals.runs.retrieve(run.id, eval_id=evaluation.id)
    assert run.status == "completed" and run.result_counts.total == 40
    items = list(client.evals.runs.output_items.list(run.id, eval_id=evaluation.id))
    assert [item.datasource_item_id for item in items] == list(range(40))
    assert before <= {item.id for item in items}


def test_a_dead_runners_run_is_taken_over_and_fails_after_its_last_attempt(server):
    client = server.client()
    evaluation = custom_eval(client)
    source = {"type": "jsonl", "source": {"type": "file_content", "content": rows()}}
    taken_over = client.evals.runs.create(evaluation.id, data_source=source)
    assert eval_runs.claim(server.db, "dead-runner", 0, server.settings.max_attempts).id == taken_over.id
    server.run_queue()  # its lease ran out: claimed again, graded
    assert client.evals.runs.retrieve(taken_over.id, eval_id=evaluation.id).status == "completed"
    doomed = client.evals.runs.create(evaluation.id, data_source=source)
    for _ in range(server.settings.max_attempts):
        assert eval_runs.claim(server.db, "dead-runner", 0, server.settings.max_attempts).id == doomed.id
    server.run_queue()
    failed = client.evals.runs.retrieve(doomed.id, eval_id=evaluation.id)
    assert failed.status == "failed" and failed.error.code == "run_failed"
