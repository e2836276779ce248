"""`openft eval` on a real fine-tune: the shared "Ahoy matey!" job (conftest.ahoy_fine_tune)
against its base on held-out questions whose references open the same way. The fine-tune must
rank above the zero-shot base, its answers must carry the opening and the base's must not.

The CLI runs in process on the live server's data dir (its default), so the stored report must
then be served by the server; a second, smaller run goes through the server (`--base-url`) and
prints the table.
"""

import json
from pathlib import Path

from typer.testing import CliRunner

from openft.cli.app import app

HELD_OUT = Path(__file__).parent / "data" / "ahoy_heldout.jsonl"
MARK = "Ahoy matey!"


def test_eval_ranks_the_fine_tune_above_the_base(live_server, ahoy_fine_tune, tmp_path):
    job = ahoy_fine_tune.job
    assert job.status == "succeeded", job.error
    args = ["eval", "--model", job.fine_tuned_model, "--file", str(HELD_OUT), "--max-tokens", "16", "--shots", "3"]
    result = CliRunner().invoke(app, [*args, "--json", "--data-dir", str(live_server.data_dir)])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)

    ranking = report["ranking"]
    assert ranking.index("fine_tuned") < ranking.index("base_zero_shot"), ranking
    arms = {arm["name"]: arm for arm in report["arms"]}
    tuned, base = arms["fine_tuned"], arms["base_zero_shot"]
    assert all(sample["output"].startswith(MARK) for sample in tuned["samples"]), tuned["samples"]
    assert not any(MARK in sample["output"] for sample in base["samples"]), base["samples"]
    assert tuned["metrics"]["similarity"] > base["metrics"]["similarity"] + 0.2
    # The fine-tune's answers are short, like its training data; few-shot pays for its examples.
    assert tuned["metrics"]["mean_output_tokens"] < base["metrics"]["mean_output_tokens"]
    assert arms["base_few_shot"]["metrics"]["mean_prompt_tokens"] > tuned["metrics"]["mean_prompt_tokens"]
    assert report["base_model"] == "gpt-3.5-turbo" and report["training_file"] == job.training_file
    assert report["system_message"] == "You are a helpful assistant."

    # Stored in the data dir: the running server (and so the dashboard) has it.
    client = live_server.client()
    assert client.get(f"/openft/evals/{report['id']}", cast_to=object) == report

    # Through the server, with the table a person reads.
    one = tmp_path / "one.jsonl"
    one.write_text(HELD_OUT.read_text().splitlines()[0] + "\n")
    small = ["eval", "--model", job.fine_tuned_model, "--file", str(one), "--max-tokens", "8", "--shots", "1"]
    result = CliRunner().invoke(app, [*small, "--base-url", live_server.base_url], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "Fine-tuned, system message" in result.stdout and "exact match" in result.stdout
    assert "Ranking: " in result.stdout
    listed = client.get("/openft/evals", cast_to=object)["data"]
    assert len(listed) == 2 and listed[1]["id"] == report["id"]


def test_eval_errors_exit_non_zero(live_server, tmp_path):
    result = CliRunner().invoke(
        app, ["eval", "--model", "gpt-3.5-turbo", "--file", str(HELD_OUT), "--base-url", live_server.base_url]
    )
    assert result.exit_code == 1 and "is not a fine-tuned model" in result.output
    result = CliRunner().invoke(
        app,
        [
            "eval",
            "--model",
            "ft:nope",
            "--file",
            str(tmp_path / "missing.jsonl"),
            "--data-dir",
            str(live_server.data_dir),
        ],
    )
    assert result.exit_code == 1 and "Cannot read" in result.output
