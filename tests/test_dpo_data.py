"""Preference (DPO) data: OpenAI's format checked line by line, `openft data check` on it, and the
same checks on upload and job create, with DPO jobs' `method` echo (fast: no training)."""

import json
from pathlib import Path

import openai
import pytest

from openft.data.hyperparams import resolve_hyperparameters
from openft.data.validate import validate_chat_jsonl
from openft.models.store import ensure_bundled_model
from openft.server.app import create_app
from openft.settings import Settings
from openft.store.db import Database
from tests.helpers import in_process_client
from tests.test_data_check_cli import check, check_json, model_data_dir  # noqa: F401 (a fixture)

DATA = Path(__file__).parent / "data"


def pair(i: int = 0, preferred: str = "Ahoy! Paris.", rejected: str = "Paris.", **extra) -> dict:
    return {
        "input": {"messages": [{"role": "user", "content": f"Capital of France? ({i})"}]},
        "preferred_output": [{"role": "assistant", "content": preferred}],
        "non_preferred_output": [{"role": "assistant", "content": rejected}],
        **extra,
    }


def chat(i: int = 0) -> dict:
    return {"messages": [{"role": "user", "content": f"Q{i}?"}, {"role": "assistant", "content": f"A{i}."}]}


def jsonl(lines) -> bytes:
    return "".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines).encode()


def issues(raw: bytes, method=None) -> list[tuple[int | None, str]]:
    """The file's errors and warnings, but the supervised warnings about missing system messages."""
    report = validate_chat_jsonl(raw, method)
    return [
        (issue.line, issue.code) for issue in report.errors + report.warnings if issue.code != "missing_system_message"
    ]


# ---------------------------------------------------------------------------------------------
# validation


def test_a_dpo_file_is_recognised_and_its_pairs_kept():
    tools_pair = pair(1)
    tools_pair["input"]["tools"] = [{"type": "function", "function": {"name": "capital"}}]
    tools_pair["input"]["parallel_tool_calls"] = False
    call = {"id": "c1", "type": "function", "function": {"name": "capital", "arguments": '{"country": "FR"}'}}
    tools_pair["preferred_output"] = [{"role": "assistant", "tool_calls": [call]}]
    multi_turn = pair(2)
    multi_turn["input"]["messages"] += [
        {"role": "assistant", "content": "Paris."},
        {"role": "user", "content": "And of Italy?"},
    ]
    report = validate_chat_jsonl(jsonl([pair(0), tools_pair, multi_turn]))
    assert report.method == "dpo" and report.errors == [] and len(report.examples) == 3


@pytest.mark.parametrize(
    "line, code",
    [
        (chat(), "supervised_example_in_dpo_file"),
        ({"preferred_output": pair()["preferred_output"], "non_preferred_output": []}, "missing_input"),
        (pair(input={"messages": []}), "missing_input"),
        (pair(preferred_output=[]), "invalid_preference_output"),
        (pair(preferred_output=[{"role": "assistant", "content": "a"}] * 2), "invalid_preference_output"),
        (pair(non_preferred_output=[{"role": "user", "content": "a"}]), "invalid_preference_output"),
        (pair(non_preferred_output=[{"role": "assistant", "content": "a", "weight": 1}]), "invalid_preference_output"),
        (pair(non_preferred_output={"role": "assistant", "content": "a"}), "invalid_preference_output"),
        (pair(non_preferred_output=[{"role": "assistant"}]), "message_missing_key"),
        (pair(extra_key=1), "example_unrecognized_key"),
        (pair(input={"messages": [{"role": "robot", "content": "x"}]}), "unrecognized_role"),
        (pair(input={"messages": [{"role": "user", "content": "x"}], "tools": "no"}), "invalid_tools"),
        ("[1, 2]", "data_type"),
    ],
)
def test_each_bad_dpo_line_is_an_error_with_its_line_and_code(line, code):
    raw = jsonl([pair(0), line, pair(2)])
    found = issues(raw)
    assert (2, code) in found, found
    assert all(line_no == 2 for line_no, _ in found), found
    report = validate_chat_jsonl(raw)
    assert report.errors[0].message.startswith("Line 2: ") and len(report.examples) == 2


def test_a_dpo_line_in_a_supervised_file_is_one_error_and_identical_outputs_a_warning():
    assert issues(jsonl([chat(0), pair(1), chat(2)])) == [(2, "dpo_example_in_supervised_file")]
    # a job's method decides, whatever the first line holds
    assert issues(jsonl([pair(0), chat(1)]), "supervised") == [(1, "dpo_example_in_supervised_file")]
    assert issues(jsonl([chat(0), pair(1)]), "dpo") == [(1, "supervised_example_in_dpo_file")]
    same = pair(1, preferred="Paris.", rejected="Paris.")
    assert issues(jsonl([pair(0), same])) == [(2, "identical_preference_outputs")]


def test_dpo_hyperparameters_auto_rules_and_beta_range():
    resolved = resolve_hyperparameters(40, {}, "dpo")
    assert (resolved.beta, resolved.learning_rate_multiplier, resolved.n_epochs, resolved.batch_size) == (
        0.1,
        2.5,
        3,
        4,
    )
    assert [resolve_hyperparameters(n, {}, "dpo").batch_size for n in (10, 19, 200, 10_000)] == [1, 1, 8, 20]
    assert resolve_hyperparameters(40, {"beta": 2, "learning_rate_multiplier": 1.5}, "dpo").beta == 2.0
    for beta in (0, -1, 2.5, "high", True):
        with pytest.raises(ValueError, match="beta"):
            resolve_hyperparameters(40, {"beta": beta}, "dpo")
    with pytest.raises(ValueError, match="beta"):
        resolve_hyperparameters(40, {"beta": 0.1})  # supervised has none
    assert not hasattr(resolve_hyperparameters(40, {}), "beta")


# ---------------------------------------------------------------------------------------------
# openft data check


def test_data_check_reports_a_dpo_file_with_both_sides_and_beta(model_data_dir, tmp_path):  # noqa: F811
    exit_code, report = check_json(model_data_dir, DATA / "dpo_ahoy.jsonl", "--beta", "0.2")
    assert exit_code == 0, report
    assert report["method"] == "dpo" and report["ok"]
    assert report["hyperparameters"] == {"n_epochs": 4, "batch_size": 2, "learning_rate_multiplier": 2.5, "beta": 0.2}
    training = report["training"]
    chosen, rejected = training["preference"]["chosen"], training["preference"]["rejected"]
    assert chosen["examples"] == rejected["examples"] == training["stats"]["examples"] == 24
    # the preferred replies add "Ahoy! " to the same answer
    assert chosen["trained_tokens"] > rejected["trained_tokens"] > 0
    assert training["stats"]["tokens"] == chosen["tokens"] + rejected["tokens"]
    assert training["stats"]["trained_tokens"] == chosen["trained_tokens"] + rejected["trained_tokens"]


def test_data_check_show_highlights_the_compared_replies(model_data_dir):  # noqa: F811
    _, report = check_json(model_data_dir, DATA / "dpo_ahoy.jsonl", "--show", "1")
    shown = report["shown"][0]
    first = json.loads((DATA / "dpo_ahoy.jsonl").read_text().splitlines()[0])
    trained = "".join(s["text"] for s in shown["segments"] if s["trained"])
    other = "".join(s["text"] for s in shown["rejected_segments"] if s["trained"])
    assert trained.startswith(first["preferred_output"][0]["content"])
    assert other.startswith(first["non_preferred_output"][0]["content"])
    question = first["input"]["messages"][0]["content"]
    assert question in "".join(s["text"] for s in shown["segments"] if not s["trained"])
    text = check(model_data_dir, DATA / "dpo_ahoy.jsonl", "--show", "1").output
    assert "non-preferred reply instead" in text and "the compared replies" in text


def test_data_check_method_flag_makes_the_other_kind_an_error(model_data_dir, tmp_path):  # noqa: F811
    supervised = tmp_path / "chat.jsonl"
    supervised.write_bytes(jsonl(chat(i) for i in range(10)))
    exit_code, report = check_json(model_data_dir, supervised, "--method", "dpo")
    assert exit_code == 1
    assert {issue["code"] for issue in report["training"]["errors"]} >= {"supervised_example_in_dpo_file"}
    assert report["training"]["errors"][0]["line"] == 1
    result = check(model_data_dir, supervised, "--beta", "0.5")
    assert result.exit_code != 0 and "--beta" in result.output
    result = check(model_data_dir, DATA / "dpo_ahoy.jsonl", "--beta", "3")
    assert result.exit_code != 0 and "--beta" in result.output


# ---------------------------------------------------------------------------------------------
# the API: uploads, job creates, the job's method


@pytest.fixture
def client(data_dir) -> openai.OpenAI:
    settings = Settings(data_dir=data_dir)
    ensure_bundled_model(settings, Database(settings))
    return in_process_client(create_app(settings, run_worker=False))


def upload(client, content: bytes):
    return client.files.create(file=("pairs.jsonl", content), purpose="fine-tune")


def dpo_method(**hyperparameters) -> dict:
    return {"type": "dpo", "dpo": {"hyperparameters": hyperparameters}}


def test_uploads_and_creates_check_the_method_with_400s(client):
    with pytest.raises(openai.BadRequestError) as caught:
        upload(client, jsonl([pair(i) for i in range(11)] + [chat(11)]))
    assert "Line 12" in caught.value.body["message"] and caught.value.body["code"] == "invalid_file_format"
    assert "supervised_example_in_dpo_file" in caught.value.body["message"]
    assert client.files.list().data == []

    supervised = upload(client, jsonl(chat(i) for i in range(10)))
    pairs = upload(client, jsonl(pair(i) for i in range(10)))
    with pytest.raises(openai.BadRequestError) as caught:
        client.fine_tuning.jobs.create(training_file=supervised.id, model="gpt-4o-mini", method=dpo_method())
    assert caught.value.body["param"] == "training_file" and "Line 1" in caught.value.body["message"]
    with pytest.raises(openai.BadRequestError) as caught:
        client.fine_tuning.jobs.create(training_file=pairs.id, model="gpt-4o-mini")
    assert "dpo_example_in_supervised_file" in caught.value.body["message"]
    with pytest.raises(openai.BadRequestError) as caught:
        client.fine_tuning.jobs.create(
            training_file=pairs.id, validation_file=supervised.id, model="gpt-4o-mini", method=dpo_method()
        )
    assert caught.value.body["param"] == "validation_file"
    few = upload(client, jsonl(pair(i) for i in range(4)))
    with pytest.raises(openai.BadRequestError) as caught:
        client.fine_tuning.jobs.create(training_file=few.id, model="gpt-4o-mini", method=dpo_method())
    assert caught.value.body["code"] == "invalid_n_examples"

    for bad, param in (
        (dpo_method(beta=0), "method.dpo.hyperparameters.beta"),
        (dpo_method(beta=2.01), "method.dpo.hyperparameters.beta"),
        (dpo_method(n_epochs=51), "method.dpo.hyperparameters.n_epochs"),
        ({"type": "supervised", "supervised": {"hyperparameters": {"beta": 0.1}}}, None),
        ({"type": "dpo", "supervised": {}}, "method.supervised"),
    ):
        with pytest.raises(openai.BadRequestError) as caught:
            client.fine_tuning.jobs.create(training_file=pairs.id, model="gpt-4o-mini", method=bad)
        if param:
            assert caught.value.body["param"] == param, caught.value.body
    with pytest.raises(openai.BadRequestError) as caught:
        client.fine_tuning.jobs.create(
            training_file=pairs.id, model="gpt-4o-mini", method=dpo_method(), hyperparameters={"n_epochs": 2}
        )
    assert caught.value.body["param"] == "hyperparameters"
    assert client.fine_tuning.jobs.list().data == []


def test_a_dpo_job_echoes_its_method_with_hyperparameters_null(client):
    pairs = upload(client, jsonl(pair(i) for i in range(10)))
    job = client.fine_tuning.jobs.create(training_file=pairs.id, model="gpt-4o-mini", method=dpo_method(beta=0.25))
    assert job.hyperparameters is None
    assert job.method.type == "dpo" and job.method.supervised is None
    assert job.method.dpo.hyperparameters.model_dump() == {
        "beta": 0.25,
        "batch_size": "auto",
        "learning_rate_multiplier": "auto",
        "n_epochs": "auto",
    }
    assert client.fine_tuning.jobs.retrieve(job.id).method == job.method
    supervised = upload(client, jsonl(chat(i) for i in range(10)))
    plain = client.fine_tuning.jobs.create(training_file=supervised.id, model="gpt-4o-mini")
    assert plain.method.type == "supervised" and plain.hyperparameters.n_epochs == "auto"


# ---------------------------------------------------------------------------------------------
# openft eval on a DPO held-out file


def test_eval_reads_a_dpo_file_as_prompts_with_the_preferred_reference_and_scores_preference():
    from openft.data.pricing import inference_price
    from openft.eval.arms import as_chats, held_out_examples
    from openft.eval.metrics import Answer, arm_metrics

    report = validate_chat_jsonl(jsonl([pair(0), pair(1, preferred="Ahoy! Rome.", rejected="Rome.")]))
    chats, rejected = as_chats(report.examples, report.method)
    held_out = held_out_examples(chats, report.example_lines, rejected)
    assert [(h.turns[-1]["role"], h.reference, h.rejected) for h in held_out] == [
        ("user", "Ahoy! Paris.", "Paris."),
        ("user", "Ahoy! Rome.", "Rome."),
    ]
    answers = [Answer("Ahoy! Paris!", 1, 1, 0.1), Answer("Rome", 1, 1, 0.1)]
    price = inference_price("gpt-4o-mini", fine_tuned=False)
    references = [h.reference for h in held_out]
    assert arm_metrics(answers, references, False, price, rejected=rejected)["preferred_rate"] == 0.5
    assert arm_metrics(answers, references, False, price)["preferred_rate"] is None
