"""Distill: stored completions as training data. `openft data export` (filters, the data check,
--upload, --dpo-from from metadata or a replacements file) and POST
/v1/openft/chat/completions/export (a checked file, a held-out file, a job, in one step), on a
data dir whose model store holds the real bundled model (its tokenizer checks the file). The
completions are made through the official client, in process, with a scripted engine."""

import json
import time

import openai
import pytest
from typer.testing import CliRunner

from openft.cli.app import app as cli
from openft.data.distill import Skipped, Stored, preference_line, read_replacements, supervised_line
from openft.models.store import register_base
from openft.server.app import create_app
from openft.services.stored_completions import Record
from openft.settings import BUNDLED_MODEL, Settings
from openft.store.db import Database
from tests.helpers import in_process_client
from tests.test_stored_completions import EchoEngine

runner = CliRunner()
WEATHER = {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}


@pytest.fixture
def server(data_dir):
    settings = Settings(data_dir=data_dir)
    register_base(Database(settings), BUNDLED_MODEL)
    app = create_app(settings, run_worker=False)
    app.state.chat.engine = EchoEngine()
    client = in_process_client(app)
    for n in range(12):
        client.chat.completions.create(
            model="gpt-4o-mini",
            messages=[{"role": "developer", "content": "Echo."}, {"role": "user", "content": f"q{n}"}],
            tools=[WEATHER] if n == 0 else None,
            store=True,
            metadata={"app": "echo", "n": str(n)},
        )
    client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "other"}], store=True)
    stored = app.state.stored
    stored.recorder.flush()
    # A dropped stream and a cut-off reply, as the gateway would have stored them.
    for n, (complete, finish_reason) in enumerate([(False, None), (True, "length")]):
        response = {
            "id": f"chatcmpl-odd{n}",
            "created": int(time.time()),
            "model": "gpt-4o-mini",
            "object": "chat.completion",
            "choices": [
                {"index": 0, "message": {"role": "assistant", "content": "Half"}, "finish_reason": finish_reason}
            ],
        }
        request = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "odd"}]}
        stored.add(
            [
                Record(
                    response["id"],
                    settings.organization_id,
                    "gpt-4o-mini",
                    {"app": "echo"},
                    request,
                    response,
                    complete,
                    "local",
                    int(time.time()),
                )
            ]
        )
    return settings, app, client


def export(settings, *args):
    return runner.invoke(cli, ["data", "export", *map(str, args), "--data-dir", str(settings.data_dir)])


def test_the_cli_writes_checked_supervised_lines_with_tools_and_skips_what_is_no_answer(server, tmp_path):
    settings, _, client = server
    out = tmp_path / "echo.jsonl"
    result = export(settings, "--metadata", "app=echo", "--model", "gpt-4o-mini", "-o", out, "--upload")
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(lines) == 12
    assert lines[0] == {
        "messages": [
            {"role": "system", "content": "Echo."},
            {"role": "user", "content": "q0"},
            {"role": "assistant", "content": "You said: q0"},
        ],
        "tools": [WEATHER],
    }
    assert "Skipped 1: the stream was dropped" in result.output and "cut off" in result.output
    assert "Data check: clean" in result.output
    file_id = result.output.split("Uploaded as ")[1].strip()
    assert client.files.retrieve(file_id).purpose == "fine-tune"
    assert client.files.content(file_id).read() == out.read_bytes()

    few = tmp_path / "few.jsonl"
    assert export(settings, "--metadata", "n=3", "-o", few).exit_code == 1  # one example: the check fails
    assert export(settings, "--metadata", "app=none", "-o", few).exit_code == 1
    assert export(settings, "--since", "2999-01-01", "-o", few).exit_code == 1
    assert export(settings, "--limit", "10", "-o", few).exit_code == 0 and len(few.read_text().splitlines()) == 10


def test_dpo_pairs_come_from_a_metadata_key_or_a_replacements_file(server, tmp_path):
    settings, _, client = server
    first, second = list(client.chat.completions.list(metadata={"app": "echo"}, limit=2))[:2]
    client.chat.completions.update(first.id, metadata={"app": "echo", "preferred": "Better q0"})
    out = tmp_path / "pairs.jsonl"
    result = export(settings, "--dpo-from", "metadata:preferred", "-o", out)
    assert result.exit_code == 0, result.output
    [pair] = [json.loads(line) for line in out.read_text().splitlines()]
    assert pair == {
        "input": {
            "messages": [{"role": "system", "content": "Echo."}, {"role": "user", "content": "q0"}],
            "tools": [WEATHER],
        },
        "preferred_output": [{"role": "assistant", "content": "Better q0"}],
        "non_preferred_output": [{"role": "assistant", "content": "You said: q0"}],
    }

    relabels = tmp_path / "relabels.jsonl"
    relabels.write_text(
        json.dumps({"completion_id": second.id, "preferred": {"role": "assistant", "content": "B"}}) + "\n"
    )
    assert export(settings, "--dpo-from", relabels, "-o", out).exit_code == 0
    assert [json.loads(line)["preferred_output"][0]["content"] for line in out.read_text().splitlines()] == ["B"]
    relabels.write_text('{"completion_id": "x"}\n')
    bad = export(settings, "--dpo-from", relabels, "-o", out)
    assert bad.exit_code == 1 and "line 1" in bad.output


def test_the_api_exports_a_checked_file_a_held_out_file_and_a_job_in_one_step(server):
    settings, app, client = server
    response = client.post(
        "/openft/chat/completions/export",
        body={"metadata": {"app": "echo"}, "held_out": 2, "fine_tune": {"model": BUNDLED_MODEL, "suffix": "echo"}},
        cast_to=object,
    )
    assert response["examples"] == 10 and len(response["held_out_ids"]) == 2
    assert {s["reason"][:10] for s in response["skipped"]} == {"the stream", "the reply "}
    assert response["check"]["ok"] is True
    job = client.fine_tuning.jobs.retrieve(response["job"]["id"])
    assert (
        job.training_file == response["training_file"]["id"]
        and job.metadata["held_out_file"] == response["held_out_file"]["id"]
    )
    held_out = [json.loads(line) for line in client.files.content(job.metadata["held_out_file"]).read().splitlines()]
    assert [line["messages"][1]["content"] for line in held_out] == ["q10", "q11"]

    with pytest.raises(openai.BadRequestError) as caught:
        client.post("/openft/chat/completions/export", body={"metadata": {"app": "none"}}, cast_to=object)
    assert "none matches" in caught.value.body["message"]
    with pytest.raises(openai.BadRequestError):
        client.post(
            "/openft/chat/completions/export", body={"ids": [response["ids"][0]], "held_out": 1}, cast_to=object
        )


def test_the_search_route_filters_by_text_and_time(server):
    _, _, client = server
    found = client.get("/openft/chat/completions", options={"params": {"text": "Q1", "limit": 100}}, cast_to=object)
    assert sorted(c["metadata"].get("n") for c in found["data"]) == ["1", "10", "11"]
    later = client.get("/openft/chat/completions", options={"params": {"since": int(time.time()) + 60}}, cast_to=object)
    assert later["data"] == []


def test_lines_keep_only_what_a_training_line_may_hold():
    stored = Stored(
        "chatcmpl-1",
        {
            "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}], "extra": 1}],
            "functions": [WEATHER["function"]],
        },
        {
            "choices": [
                {
                    "message": {
                        "role": "assistant",
                        "content": None,
                        "refusal": None,
                        "function_call": {"name": "f", "arguments": "{}"},
                    },
                    "finish_reason": "function_call",
                }
            ]
        },
        "completed",
        {},
    )
    assert supervised_line(stored) == {
        "messages": [
            {"role": "user", "content": "hi"},
            {"role": "assistant", "function_call": {"name": "f", "arguments": "{}"}},
        ],
        "functions": [WEATHER["function"]],
    }
    assert preference_line(stored, {"role": "assistant", "content": "x", "refusal": None})["preferred_output"] == [
        {"role": "assistant", "content": "x"}
    ]
    with pytest.raises(Skipped):
        supervised_line(Stored("c", {"messages": []}, {"choices": []}, "completed", {}))


def test_a_replacements_file_names_its_bad_line(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_text('{"completion_id": "a", "preferred": "ok"}\n\nnot json\n')
    with pytest.raises(ValueError, match="line 3"):
        read_replacements(path)
