"""OpenAI's Evals API end to end: the official client against the session's live server on the
bundled model. An eval with every grader kind on a file (the model graders on the bundled
model); a completions run whose replies are the chat endpoint's; a run canceled mid-way; and, on
a server of its own, a run whose server is killed mid-way. (A server stopped cleanly mid-run:
test_evals_openai_api.py.)"""

import json
import signal
import time

import httpx
import pytest
from rapidfuzz import fuzz, utils

from openft.settings import BUNDLED_MODEL
from tests.helpers import LiveServer, new_data_dir

FAST_LEASE = {"OPENFT_LEASE_SECONDS": "4"}  # a killed server's run is taken over 4 s after

ITEM_SCHEMA = {"type": "object", "properties": {"question": {"type": "string"}, "answer": {"type": "string"}}}
QUESTIONS = [
    ("What is the capital of France?", "Paris"),
    ("How many legs has a spider?", "eight"),
    ("What colour is the sky?", "blue"),
    ("Who wrote Hamlet?", "Shakespeare"),
    ("What is 2 + 2?", "4"),
    ("What is frozen water called?", "ice"),
]
TEMPLATE = {"type": "template", "template": [{"role": "user", "content": "{{ item.question }}"}]}
PYTHON = (
    "def grade(sample, item):\n    return 1.0 if item['answer'].lower() in sample['output_text'].lower() else 0.0\n"
)
CRITERIA = [
    {
        "type": "string_check",
        "name": "mentions",
        "input": "{{ sample.output_text }}",
        "reference": "{{ item.answer }}",
        "operation": "ilike",
    },
    {
        "type": "text_similarity",
        "name": "similar",
        "input": "{{ sample.output_text }}",
        "reference": "{{ item.answer }}",
        "evaluation_metric": "fuzzy_match",
        "pass_threshold": 0.5,
    },
    {"type": "python", "name": "contains", "source": PYTHON, "pass_threshold": 1.0},
    {
        "type": "score_model",
        "name": "judge",
        "model": BUNDLED_MODEL,
        "input": [{"role": "user", "content": "Rate 0 to 1: is '{{ sample.output_text }}' '{{ item.answer }}'?"}],
        "range": [0, 1],
        "sampling_params": {"temperature": 0, "max_completions_tokens": 32},
    },
]


def rows(n: int) -> list[dict]:
    return [{"item": {"question": q, "answer": a}} for q, a in (QUESTIONS * (n // len(QUESTIONS) + 1))[:n]]


def wait_run(client, eval_id: str, run_id: str, until=lambda run: run.status in ("completed", "failed", "canceled")):
    deadline = time.time() + 300
    while time.time() < deadline:
        run = client.evals.runs.retrieve(run_id, eval_id=eval_id)
        if until(run):
            return run
        time.sleep(0.2)
    raise TimeoutError(f"run {run_id} is still {run.status}")


def completions(n: int, max_tokens: int) -> dict:
    return {
        "type": "completions",
        "model": BUNDLED_MODEL,
        "source": {"type": "file_content", "content": rows(n)},
        "input_messages": TEMPLATE,
        "sampling_params": {"temperature": 0, "max_completion_tokens": max_tokens},
    }


def new_eval(client, criteria=CRITERIA[:1]):
    return client.evals.create(
        data_source_config={"type": "custom", "item_schema": ITEM_SCHEMA}, testing_criteria=criteria
    )


def test_every_grader_kind_grades_a_file_of_samples(live_server):
    client = live_server.client()
    evaluation = new_eval(client, CRITERIA)
    lines = [
        {"item": {"question": q, "answer": a}, "sample": {"output_text": text}}
        for (q, a), text in zip(QUESTIONS[:2], ["Paris, of course.", "Six"], strict=True)
    ]
    upload = client.files.create(
        file=("rows.jsonl", "".join(json.dumps(x) + "\n" for x in lines).encode()), purpose="evals"
    )
    run = client.evals.runs.create(
        evaluation.id, data_source={"type": "jsonl", "source": {"type": "file_id", "id": upload.id}}
    )
    run = wait_run(client, evaluation.id, run.id)
    assert run.status == "completed", run.error
    items = client.evals.runs.output_items.list(run.id, eval_id=evaluation.id).data
    by_name = [{result.name: result for result in item.results} for item in items]
    assert [r["mentions"].score for r in by_name] == [1.0, 0.0]
    assert [r["contains"].score for r in by_name] == [1.0, 0.0]
    assert [r["contains"].passed for r in by_name] == [True, False]
    assert by_name[0]["similar"].score == pytest.approx(
        fuzz.WRatio("Paris, of course.", "Paris", processor=utils.default_process) / 100
    )
    for results in by_name:
        judge = results["judge"]
        assert 0 <= judge.score <= 1 and (judge.error is None or judge.error == "model_grader_parse_error")
    usage = {u.run_model_name: u for u in run.per_model_usage}[BUNDLED_MODEL]
    assert usage.invocation_count == 2 and usage.total_tokens > 0  # the judge's calls
    assert run.result_counts.total == 2


def test_a_completions_run_answers_as_the_chat_endpoint_does(live_server):
    client = live_server.client()
    evaluation = new_eval(client)
    run = client.evals.runs.create(evaluation.id, data_source=completions(4, 8))
    run = wait_run(client, evaluation.id, run.id)
    assert run.status == "completed", run.error
    items = client.evals.runs.output_items.list(run.id, eval_id=evaluation.id).data
    for item, (question, _) in zip(items, QUESTIONS[:4], strict=True):
        direct = client.chat.completions.create(
            model=BUNDLED_MODEL,
            messages=[{"role": "user", "content": question}],
            temperature=0,
            seed=42,
            max_completion_tokens=8,
        )
        assert item.sample.output[0].content == direct.choices[0].message.content
        assert item.sample.usage.completion_tokens == direct.usage.completion_tokens
    usage = run.per_model_usage[0]
    assert (usage.run_model_name, usage.invocation_count) == (BUNDLED_MODEL, 4)
    assert httpx.get(run.report_url).status_code == 200  # the run's page on the dashboard


def test_a_run_canceled_mid_way_grades_no_more_rows(live_server):
    client = live_server.client()
    evaluation = new_eval(client)
    run = client.evals.runs.create(evaluation.id, data_source=completions(40, 16))
    wait_run(client, evaluation.id, run.id, until=lambda run: run.result_counts.total >= 1)
    assert client.evals.runs.cancel(run.id, eval_id=evaluation.id).status == "canceled"
    time.sleep(0.5)  # rows finishing after the cancel are dropped, the others at the next renew (2 s)
    graded = client.evals.runs.output_items.list(run.id, eval_id=evaluation.id, limit=100).data
    time.sleep(1)
    run = client.evals.runs.retrieve(run.id, eval_id=evaluation.id)
    assert run.status == "canceled" and run.result_counts.total == len(graded) < 40


def test_a_run_goes_on_after_its_server_is_killed(tmp_path, model_store):
    """kill -9 mid-run: the run's lease runs out, the restarted server's runner takes it and
    grades only the rows not stored yet; nothing stored is lost or graded twice."""
    data_dir = new_data_dir(tmp_path / "data", model_store)
    server = LiveServer(data_dir, env=FAST_LEASE)
    try:
        client = server.client()
        evaluation = new_eval(client)
        run = client.evals.runs.create(evaluation.id, data_source=completions(40, 16))
        wait_run(client, evaluation.id, run.id, until=lambda run: run.result_counts.total >= 1)
        before = {item.id for item in client.evals.runs.output_items.list(run.id, eval_id=evaluation.id, limit=100)}
        server.process.send_signal(signal.SIGKILL)
        server.process.wait()
    finally:
        server.stop()
    server = LiveServer(data_dir, env=FAST_LEASE)
    try:
        client = server.client()
        run = wait_run(client, evaluation.id, run.id)
        assert run.status == "completed" and run.result_counts.total == 40, run.error
        items = list(client.evals.runs.output_items.list(run.id, eval_id=evaluation.id, limit=100))
        assert [item.datasource_item_id for item in items] == list(range(40))
        assert before <= {item.id for item in items}
    finally:
        server.stop()
