"""`openft data check`: the CLI over validation, real-tokenizer statistics, price and ETA.

The model store holds the real SmolLM2-135M-Instruct (tokenizer + chat template). The training
speed is seeded in the data dir, so these tests never run the benchmark; the one test that does
is marked slow.
"""

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from openft.cli.app import app
from openft.data.pricing import training_cost_usd
from openft.data.stats import distribution, percentile
from openft.runner import throughput
from openft.settings import BUNDLED_MODEL
from tests.data_cases import CASES as ERROR_CASES
from tests.data_cases import WARNING_CASES
from tests.helpers import new_data_dir

MARV = Path(__file__).parent.parent / "examples" / "marv.jsonl"
SEEDED_TOKENS_PER_SECOND = 100.0

# Wide enough that rich never wraps a line the tests look for (where it wraps depends on figures
# that differ by host, such as the memory plan).
runner = CliRunner(env={"COLUMNS": "240"})


@pytest.fixture(scope="session")
def model_data_dir(tmp_path_factory, model_store) -> Path:
    """A data dir whose model store holds the bundled model, with a known training speed."""
    data_dir = new_data_dir(tmp_path_factory.mktemp("openft-data"), model_store)
    throughput.record_job_throughput(data_dir, BUNDLED_MODEL, tokens=1000, seconds=10.0)
    return data_dir


def check(data_dir: Path, *args: str):
    return runner.invoke(app, ["data", "check", *map(str, args), "--data-dir", str(data_dir)])


def check_json(data_dir: Path, *args: str) -> tuple[int, dict]:
    result = check(data_dir, *args, "--json")
    return result.exit_code, json.loads(result.stdout)


def chat(user: str = "What is 2+2?", reply: str = "Four, obviously.", system: str | None = "Be brief.") -> dict:
    messages = [{"role": "system", "content": system}] if system is not None else []
    return {"messages": messages + [{"role": "user", "content": user}, {"role": "assistant", "content": reply}]}


def write_jsonl(path: Path, *lines: dict | str) -> Path:
    """Each argument is one line: a dict is JSON-encoded, a string is written as is."""
    path.write_text("".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines))
    return path


def good_lines(n: int) -> list[dict]:
    return [chat(user=f"Question {i}?") for i in range(n)]


# ---------------------------------------------------------------------------------------------
# the report


def test_good_file_exits_0_with_token_stats_cost_and_eta(model_data_dir):
    result = check(model_data_dir, MARV)

    assert result.exit_code == 0, result.output
    for expected in (
        "tokens per example",
        "p95",
        "trained tokens",
        "examples truncated",
        "n_epochs 5",
        "billed tokens",
        "gpt-3.5-turbo's $0.008 / 1K tokens",
        "tokens/s",
        "LoRA on cpu: ~",
        "OK",
    ):
        assert expected in result.output
    assert "Error" not in result.output


def test_json_report_shape(model_data_dir):
    exit_code, report = check_json(model_data_dir, MARV)

    assert exit_code == 0
    assert set(report) == {
        "ok",
        "model",
        "method",
        "context_tokens",
        "training",
        "validation",
        "hyperparameters",
        "billed_tokens",
        "cost",
        "eta",
        "plan",
    }
    assert report["ok"] is True and report["model"] == BUNDLED_MODEL and report["validation"] is None
    training = report["training"]
    assert report["method"] == "supervised"
    assert set(training) == {"file", "errors", "warnings", "stats", "preference"}
    assert training["preference"] is None
    assert training["errors"] == []
    assert {"line": None, "code": "identical_system_message"}.items() <= training["warnings"][0].items()
    stats = training["stats"]
    assert stats["examples"] == 20
    assert set(stats["tokens_per_example"]) == {"min", "p5", "median", "mean", "p95", "max"}
    assert stats["messages_per_example"]["max"] == 3
    assert 0 < stats["trained_tokens"] < stats["tokens"]
    assert stats["tokens"] == round(stats["tokens_per_example"]["mean"] * 20)
    assert stats["truncated_lines"] == []
    assert report["hyperparameters"] == {"n_epochs": 5, "batch_size": 1, "learning_rate_multiplier": 2.0}
    assert report["billed_tokens"] == stats["tokens"] * 5
    assert report["cost"] == {
        "model": "gpt-3.5-turbo",
        "usd_per_1k_tokens": 0.008,
        "usd": training_cost_usd("gpt-3.5-turbo", report["billed_tokens"]),
        "reference": True,  # SmolLM2 is not an OpenAI model: gpt-3.5-turbo is shown for reference
    }
    assert report["eta"]["source"] == "jobs"
    assert report["eta"]["seconds"] == pytest.approx(report["billed_tokens"] / SEEDED_TOKENS_PER_SECOND, abs=0.1)
    # the memory plan on this host: a 135M model fits any machine that runs these tests, in LoRA
    plan = report["plan"]
    assert (plan["device"], plan["method"], plan["fits"], plan["problem"]) == ("cpu", "lora", True, None)
    assert plan["batch"][0] == 1 and max(stats["tokens_per_example"].values()) <= plan["batch"][1] <= 2048
    assert plan["estimate"] == sum(plan["parts"].values()) <= plan["budget"]
    assert plan["description"].startswith(("bf16 LoRA on cpu: ~", "fp32 LoRA on cpu: ~"))


def test_seed_example_100k_tokens_for_3_epochs_costs_2_40(model_data_dir, tmp_path):
    assert training_cost_usd("gpt-3.5-turbo", 100_000 * 3) == 2.40
    # 100 examples of ~1,000 tokens: " hello" and " world" are one token each.
    lines = [chat(user="hello " * 490 + str(i), reply="world " * 490, system=None) for i in range(100)]
    path = write_jsonl(tmp_path / "seed.jsonl", *lines)

    exit_code, report = check_json(model_data_dir, path, "--model", "gpt-3.5-turbo", "--epochs", "3")

    assert exit_code == 0
    tokens = report["training"]["stats"]["tokens"]
    assert tokens == pytest.approx(100_000, rel=0.03)
    assert report["billed_tokens"] == tokens * 3
    assert report["cost"]["reference"] is False
    assert report["cost"]["usd"] == training_cost_usd("gpt-3.5-turbo", tokens * 3)
    assert report["cost"]["usd"] == pytest.approx(2.40, rel=0.03)


def test_openai_name_prices_as_itself_but_tokenizes_with_the_base(model_data_dir):
    _, report = check_json(model_data_dir, MARV, "--model", "gpt-4o-mini")

    assert report["model"] == BUNDLED_MODEL
    assert report["cost"]["model"] == "gpt-4o-mini" and report["cost"]["usd_per_1k_tokens"] == 0.003


# ---------------------------------------------------------------------------------------------
# errors: exit 1, with line numbers and codes


def test_bad_file_exits_1_with_line_numbers_and_codes(model_data_dir, tmp_path):
    lines = good_lines(12)
    lines[2] = '{"messages": [}'
    lines[4] = {"messages": [{"role": "robot", "content": "beep"}, {"role": "assistant", "content": "ok"}]}
    path = write_jsonl(tmp_path / "bad.jsonl", *lines)

    result = check(model_data_dir, path)

    assert result.exit_code == 1
    assert "invalid_json  Line 3: invalid JSON" in result.output
    assert "unrecognized_role  Line 5: messages[0]: role 'robot'" in result.output
    _, report = check_json(model_data_dir, path)
    assert report["ok"] is False
    assert [(e["line"], e["code"]) for e in report["training"]["errors"]] == [
        (3, "invalid_json"),
        (5, "unrecognized_role"),
    ]
    assert report["training"]["stats"]["examples"] == 10  # the valid ones are still measured


def test_fewer_than_10_examples_exits_1_with_openais_message(model_data_dir, tmp_path):
    path = write_jsonl(tmp_path / "small.jsonl", *good_lines(5))

    result = check(model_data_dir, path)

    assert result.exit_code == 1
    assert "invalid_n_examples" in result.output
    assert "Training file has 5 example(s), but must have at least 10 examples" in result.output


def test_validation_file_errors_exit_1(model_data_dir, tmp_path):
    valid = write_jsonl(tmp_path / "valid.jsonl", chat(), '{"messages": 1}')

    exit_code, report = check_json(model_data_dir, MARV, "--validation", valid)

    assert exit_code == 1
    assert report["training"]["errors"] == []
    assert [(e["line"], e["code"]) for e in report["validation"]["errors"]] == [(2, "missing_messages_list")]
    assert report["validation"]["stats"]["examples"] == 1  # no 10-example minimum for validation


def test_example_over_the_context_is_truncated_with_a_warning(model_data_dir, tmp_path):
    lines = good_lines(10)
    lines[7] = chat(user="hello " * 2100)  # the reply lies beyond 2,048 tokens
    path = write_jsonl(tmp_path / "long.jsonl", *lines)

    exit_code, report = check_json(model_data_dir, path)

    assert exit_code == 0
    stats = report["training"]["stats"]
    assert stats["truncated_lines"] == [8] and stats["tokens_per_example"]["max"] == 2048
    [warning] = [w for w in report["training"]["warnings"] if w["code"] == "example_too_long"]
    assert warning["line"] == 8
    assert "truncated to its first 2048 tokens" in warning["message"]
    assert "no trained token is left" in warning["message"]


def test_unknown_model_and_bad_hyperparameters_fail_in_one_line(model_data_dir):
    result = check(model_data_dir, MARV, "--model", "llama-9000")
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [
        "Error: Model 'llama-9000' is not in the model store: see `openft models list`, or `openft models add` it"
    ]

    result = check(model_data_dir, MARV, "--epochs", "0")
    assert result.exit_code == 1
    assert result.output.startswith("Error: --epochs: Invalid value for hyperparameters.n_epochs")

    result = check(model_data_dir, Path("no-such-file.jsonl"))
    assert result.exit_code == 1
    assert result.output.startswith("Error: Cannot read no-such-file.jsonl")


# ---------------------------------------------------------------------------------------------
# --show: what the model will learn


def test_show_marks_assistant_text_as_trained_and_prompt_as_not(model_data_dir):
    result = check(model_data_dir, MARV, "--show", "1")

    assert result.exit_code == 0
    expected = (
        "<|im_start|>system\nMarv is a factual chatbot that is also sarcastic.<|im_end|>\n"
        "<|im_start|>user\nWhat's the capital of France?<|im_end|>\n"
        "<|im_start|>assistant\n[[Paris, as if everyone doesn't know that already.<|im_end|>]]\n"
    )
    assert expected in result.output
    assert "Example 2" not in result.output


def test_show_json_segments_cover_the_rendered_example(model_data_dir):
    _, report = check_json(model_data_dir, MARV, "--show", "2")

    assert [shown["line"] for shown in report["shown"]] == [1, 2]
    segments = report["shown"][0]["segments"]
    trained = "".join(s["text"] for s in segments if s["trained"])
    assert trained == "Paris, as if everyone doesn't know that already.<|im_end|>"
    assert [s["text"] for s in segments if s["special"] and not s["trained"]][:2] == ["<|im_start|>", "<|im_end|>"]


def test_show_renders_tool_calls_and_trains_them(model_data_dir, tmp_path):
    tool = {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}
    call = {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}
    example = {
        "tools": [tool],
        "messages": [
            {"role": "user", "content": "Weather in Paris?"},
            {"role": "assistant", "tool_calls": [call]},
        ],
    }
    path = write_jsonl(tmp_path / "tools.jsonl", example, *good_lines(9))

    exit_code, report = check_json(model_data_dir, path, "--show", "1")

    assert exit_code == 0
    segments = report["shown"][0]["segments"]
    trained = "".join(s["text"] for s in segments if s["trained"])
    prompt = "".join(s["text"] for s in segments if not s["trained"])
    assert '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>' in trained
    assert "<tools>" in prompt and "Weather in Paris?" in prompt


# ---------------------------------------------------------------------------------------------
# the pieces: statistics and the throughput cache


def test_percentiles_interpolate_linearly():
    assert percentile([1, 2, 3, 4], 50) == 2.5
    assert percentile([10], 95) == 10
    assert percentile(list(range(101)), 5) == 5
    d = distribution([5, 1, 3])
    assert (d.min, d.median, d.mean, d.max) == (1, 3, 3, 5)


def test_throughput_cache_prefers_finished_jobs_over_the_benchmark(tmp_path):
    assert throughput.cached(tmp_path, "m") is None
    throughput._update(tmp_path, "m", benchmark_tokens_per_second=50.0)
    entry = throughput.cached(tmp_path, "m")
    assert (entry["source"], entry["tokens_per_second"]) == ("benchmark", 50.0)

    throughput.record_job_throughput(tmp_path, "m", tokens=3000, seconds=10.0)
    throughput.record_job_throughput(tmp_path, "m", tokens=1000, seconds=10.0)
    entry = throughput.cached(tmp_path, "m")
    assert (entry["source"], entry["tokens_per_second"]) == ("jobs", 200.0)  # 4000 tokens / 20 s
    assert entry["benchmark_tokens_per_second"] == 50.0
    assert throughput.cached(tmp_path, "other") is None


def test_benchmark_measures_and_caches_once(model_data_dir, tmp_path):
    model_path = model_data_dir / "models" / BUNDLED_MODEL
    entry = throughput.ensure_measured(tmp_path, BUNDLED_MODEL, model_path, threads=2)

    assert entry["source"] == "benchmark" and entry["tokens_per_second"] > 0
    assert json.loads((tmp_path / "throughput.json").read_text())[BUNDLED_MODEL] == entry
    assert throughput.ensure_measured(tmp_path, BUNDLED_MODEL, model_path, threads=2) == entry  # cached


@pytest.mark.parametrize("code", sorted(ERROR_CASES))
def test_each_error_code_exits_1_naming_code_and_line(model_data_dir, tmp_path, code):
    content, line = ERROR_CASES[code]
    (tmp_path / "bad.jsonl").write_bytes(content)
    exit_code, report = check_json(model_data_dir, tmp_path / "bad.jsonl")

    assert exit_code == 1 and not report["ok"]
    assert {"line": line, "code": code}.items() <= report["training"]["errors"][0].items()


@pytest.mark.parametrize("code", sorted(WARNING_CASES))
def test_each_warning_code_exits_0_naming_code_and_line(model_data_dir, tmp_path, code):
    content, line = WARNING_CASES[code]
    (tmp_path / "warned.jsonl").write_bytes(content)
    exit_code, report = check_json(model_data_dir, tmp_path / "warned.jsonl")

    assert exit_code == 0 and report["ok"]
    assert (line, code) in [(w["line"], w["code"]) for w in report["training"]["warnings"]]
