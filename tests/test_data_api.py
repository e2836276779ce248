"""Every validation error code through the official client: a fine-tune upload with the crafted
file is a 400 (`openai.BadRequestError`) whose message names the line and the code, and nothing
is stored. Then the 10-example minimum, which applies when a job is created."""

import json
import re

import openai
import pytest

from openft.data import validate
from openft.models.store import ensure_bundled_model
from openft.server.app import create_app
from openft.settings import Settings
from openft.store.db import Database
from tests.conftest import in_process_client


@pytest.fixture
def client(data_dir) -> openai.OpenAI:
    settings = Settings(data_dir=data_dir)
    ensure_bundled_model(settings, Database(settings))
    return in_process_client(create_app(settings, run_worker=False))


def chat(i: int) -> dict:
    return {
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": f"Q{i}?"},
            {"role": "assistant", "content": f"A{i}."},
        ]
    }


def jsonl(*lines: dict | list | str) -> bytes:
    """Each argument is one line: a string is written as is, anything else JSON-encoded."""
    return "".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines).encode()


def third_line(bad: dict | list | str) -> bytes:
    return jsonl(chat(1), chat(2), bad, chat(3))


def with_messages(*messages: dict, **example) -> dict:
    return {**example, "messages": list(messages)}


USER = {"role": "user", "content": "Weather in Paris?"}
REPLY = {"role": "assistant", "content": "Sunny."}
WEATHER = {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}
CALL = {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}

# code -> (crafted file, the line the error is on; None for the file as a whole)
CASES = {
    "empty_file": (b"\n\n", None),
    "not_jsonl": (json.dumps([chat(1), chat(2)], indent=2).encode(), 1),
    "invalid_encoding": (jsonl(chat(1)) + b'{"messages": "caf\xe9"}\n', 2),
    "invalid_json": (third_line('{"messages": [}'), 3),
    "data_type": (third_line(["a", "list"]), 3),
    "example_unrecognized_key": (third_line({**chat(9), "metadata": {}}), 3),
    "missing_messages_list": (third_line({"messages": []}), 3),
    "example_missing_assistant_message": (third_line(with_messages(USER)), 3),
    "no_trained_assistant_message": (third_line(with_messages(USER, {**REPLY, "weight": 0})), 3),
    "message_missing_key": (third_line(with_messages({"content": "Hi"}, REPLY)), 3),
    "message_unrecognized_key": (third_line(with_messages({**USER, "timestamp": 1}, REPLY)), 3),
    "unrecognized_role": (third_line(with_messages({"role": "human", "content": "Hi"}, REPLY)), 3),
    "missing_content": (third_line(with_messages({"role": "user", "content": None}, REPLY)), 3),
    "invalid_weight": (third_line(with_messages(USER, {**REPLY, "weight": 0.5})), 3),
    "invalid_tools": (third_line(with_messages(USER, REPLY, tools=[WEATHER["function"]])), 3),
    "invalid_functions": (third_line(with_messages(USER, REPLY, functions=[{"parameters": {}}])), 3),
    "invalid_parallel_tool_calls": (
        third_line(with_messages(USER, REPLY, tools=[WEATHER], parallel_tool_calls="yes")),
        3,
    ),
    "invalid_tool_calls": (third_line(with_messages(USER, {"role": "assistant", "tool_calls": []}, REPLY)), 3),
    "invalid_function_call": (
        third_line(
            with_messages(USER, {"role": "assistant", "function_call": {"name": "f", "arguments": "[1]"}}, REPLY)
        ),
        3,
    ),
    "invalid_tool_call_id": (
        third_line(
            with_messages(
                USER,
                {"role": "assistant", "tool_calls": [CALL]},
                {"role": "tool", "tool_call_id": "call_9", "content": "21"},
                REPLY,
                tools=[WEATHER],
            )
        ),
        3,
    ),
}


def documented_error_codes() -> set[str]:
    """The error codes the validator's docstring lists, which are its contract with clients."""
    section = validate.__doc__.split("Error codes:")[1].split("Warning codes:")[0]
    return set(re.findall(r"\b[a-z]+(?:_[a-z]+)+\b", section))


def test_every_documented_error_code_has_a_case():
    assert set(CASES) == documented_error_codes()


@pytest.mark.parametrize("code", sorted(CASES))
def test_upload_with_the_error_is_rejected_naming_line_and_code(client, code):
    content, line = CASES[code]
    with pytest.raises(openai.BadRequestError) as caught:
        client.files.create(file=("train.jsonl", content), purpose="fine-tune")

    error = caught.value.body
    assert error["param"] == "file" and error["code"] == "invalid_file_format"
    where = f"Line {line}: " if line is not None else ""
    assert f"{where}[{code}] " in error["message"]
    assert client.files.list().data == []


def test_fewer_than_10_examples_fail_job_creation_with_openais_message(client):
    nine = client.files.create(file=("train.jsonl", jsonl(*(chat(i) for i in range(9)))), purpose="fine-tune")
    with pytest.raises(openai.BadRequestError) as caught:
        client.fine_tuning.jobs.create(training_file=nine.id, model="gpt-3.5-turbo")

    error = caught.value.body
    assert error["message"] == "Training file has 9 example(s), but must have at least 10 examples"
    assert (error["code"], error["param"]) == ("invalid_n_examples", "training_file")
    assert client.fine_tuning.jobs.list().data == []

    ten = client.files.create(file=("train.jsonl", jsonl(*(chat(i) for i in range(10)))), purpose="fine-tune")
    assert client.fine_tuning.jobs.create(training_file=ten.id, model="gpt-3.5-turbo").status == "validating_files"


def ten_around(line_3: dict | str) -> bytes:
    """Eleven good examples with `line_3` as the third line."""
    return jsonl(chat(1), chat(2), line_3, *(chat(i) for i in range(3, 12)))


# code -> (crafted file, the line the warning is on; None for the file as a whole)
WARNING_CASES = {
    "blank_line": (ten_around(""), 3),
    "duplicate_example": (ten_around(chat(1)), 3),
    "missing_system_message": (ten_around(with_messages(USER, REPLY)), 3),
    "missing_user_message": (ten_around(with_messages({"role": "system", "content": "Be brief."}, REPLY)), 3),
    "short_assistant_reply": (ten_around(with_messages(USER, {**REPLY, "content": "k"})), 3),
    "identical_system_message": (jsonl(*(chat(i) for i in range(12))), None),
}


def documented_warning_codes() -> set[str]:
    section = validate.__doc__.split("Warning codes:")[1].split("\n\n")[0]
    return set(re.findall(r"\b[a-z]+(?:_[a-z]+)+\b", section))


def test_every_documented_warning_code_has_a_case():
    assert set(WARNING_CASES) == documented_warning_codes()


@pytest.mark.parametrize("code", sorted(WARNING_CASES))
def test_upload_with_a_warning_is_accepted_and_names_it_in_status_details(client, code):
    content, line = WARNING_CASES[code]
    uploaded = client.files.create(file=("train.jsonl", content), purpose="fine-tune")

    assert uploaded.status == "processed"
    where = f"Line {line}: " if line is not None else ""
    assert f"{where}[{code}] " in uploaded.status_details
    assert client.files.retrieve(uploaded.id).status_details == uploaded.status_details
    assert client.fine_tuning.jobs.create(training_file=uploaded.id, model="gpt-3.5-turbo").status == "validating_files"


def test_a_clean_upload_has_no_status_details(client):
    varied = [
        {
            "messages": [
                {"role": "system", "content": f"Style {i}."},
                {"role": "user", "content": f"Q{i}?"},
                {"role": "assistant", "content": f"A{i}."},
            ]
        }
        for i in range(10)
    ]
    assert client.files.create(file=("train.jsonl", jsonl(*varied)), purpose="fine-tune").status_details is None
