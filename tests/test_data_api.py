"""Every validation error code through the official client: a fine-tune upload with the crafted
file is a 400 (`openai.BadRequestError`) whose message names the line and the code, and nothing
is stored. Then the 10-example minimum, which applies when a job is created."""

import re

import openai
import pytest

from openft.data import validate
from openft.models.store import ensure_bundled_model
from openft.server.app import create_app
from openft.settings import Settings
from openft.store.db import Database
from tests.data_cases import CASES, WARNING_CASES, chat, jsonl
from tests.helpers import in_process_client


@pytest.fixture
def client(data_dir) -> openai.OpenAI:
    settings = Settings(data_dir=data_dir)
    ensure_bundled_model(settings, Database(settings))
    return in_process_client(create_app(settings, run_worker=False))


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
    method = {"type": "dpo"} if b'"preferred_output"' in content else openai.NOT_GIVEN  # a file holds one method
    job = client.fine_tuning.jobs.create(training_file=uploaded.id, model="gpt-3.5-turbo", method=method)
    assert job.status == "validating_files"


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
