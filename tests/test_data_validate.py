"""Unit tests for the pure training-data layer: validation, auto hyperparameters and pricing."""

import json

import pytest

from openft.data.hyperparams import (
    Hyperparameters,
    resolve_hyperparameters,
    validate_requested_hyperparameters,
)
from openft.data.pricing import training_cost_usd
from openft.data.validate import DataIssue, check_example_count, validate_chat_jsonl


def chat(user: str = "What is 2+2?", reply: str = "4 is the answer.", system: str | None = "Be brief.") -> dict:
    messages = [{"role": "system", "content": system}] if system is not None else []
    return {"messages": messages + [{"role": "user", "content": user}, {"role": "assistant", "content": reply}]}


def jsonl(*lines: dict | str) -> bytes:
    """Each argument is one line: a dict is JSON-encoded, a string is written as is."""
    return "".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines).encode()


def codes(issues: list[DataIssue]) -> list[tuple[int | None, str]]:
    return [(issue.line, issue.code) for issue in issues]


def line_warnings(report) -> list[tuple[int | None, str]]:
    """Warnings less identical_system_message, which most of these files trigger by design."""
    return [(w.line, w.code) for w in report.warnings if w.code != "identical_system_message"]


def good_file(n: int = 10) -> bytes:
    return jsonl(*(chat(user=f"Question {i}?", system=f"System {i % 2}") for i in range(n)))


WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}


def tool_example(**overrides: object) -> dict:
    call = {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}
    example = {
        "tools": [WEATHER_TOOL],
        "messages": [
            {"role": "system", "content": "You can look up the weather."},
            {"role": "user", "content": "Weather in Paris?"},
            {"role": "assistant", "tool_calls": [call]},
            {"role": "tool", "tool_call_id": "call_1", "content": '{"temp_c": 21}'},
            {"role": "assistant", "content": "It is 21 degrees C in Paris."},
        ],
    }
    example.update(overrides)
    return example


# ---------------------------------------------------------------------------------------------
# Good files


def test_good_file_is_ok_with_no_warnings():
    report = validate_chat_jsonl(good_file(12))
    assert report.ok
    assert report.errors == [] and report.warnings == []
    assert len(report.examples) == 12
    assert report.example_lines == list(range(1, 13))
    assert report.examples[0]["messages"][1]["content"] == "Question 0?"


def test_examples_with_errors_are_left_out_and_lines_kept():
    report = validate_chat_jsonl(jsonl(chat(user="a"), "not json", chat(user="b")))
    assert not report.ok
    assert report.example_lines == [1, 3]
    assert [ex["messages"][1]["content"] for ex in report.examples] == ["a", "b"]


def test_all_errors_in_the_file_are_reported_with_lines():
    bad_message = {"messages": [{"role": "user"}, {"role": "robot", "content": "x", "extra": 1}]}
    report = validate_chat_jsonl(jsonl(chat(), "{oops", [1, 2], bad_message))
    assert codes(report.errors) == [
        (2, "invalid_json"),
        (3, "data_type"),
        (4, "message_missing_key"),
        (4, "message_unrecognized_key"),
        (4, "unrecognized_role"),
        (4, "example_missing_assistant_message"),
    ]
    for issue in report.errors:
        assert issue.message.startswith(f"Line {issue.line}: ")


def test_content_may_be_a_list_of_text_parts():
    example = chat()
    example["messages"][2]["content"] = [{"type": "text", "text": "Four."}]
    assert validate_chat_jsonl(jsonl(example)).ok


def test_crlf_line_endings_and_no_final_newline():
    raw = (json.dumps(chat(user="a")) + "\r\n" + json.dumps(chat(user="b"))).encode()
    report = validate_chat_jsonl(raw)
    assert report.ok and line_warnings(report) == []
    assert report.example_lines == [1, 2]


# ---------------------------------------------------------------------------------------------
# File-level problems


def test_bom_is_accepted_and_stripped():
    report = validate_chat_jsonl(b"\xef\xbb\xbf" + good_file(2))
    assert report.ok
    assert report.example_lines == [1, 2]


def test_blank_lines_are_skipped_with_a_warning():
    report = validate_chat_jsonl(jsonl(chat(user="a"), "", "   ", chat(user="b")))
    assert report.ok
    assert report.example_lines == [1, 4]
    assert line_warnings(report) == [(2, "blank_line"), (3, "blank_line")]


@pytest.mark.parametrize("raw", [b"", b"\n\n  \n", b"\xef\xbb\xbf"])
def test_empty_file(raw):
    report = validate_chat_jsonl(raw)
    assert codes(report.errors) == [(None, "empty_file")]
    assert report.examples == []


def test_json_array_spanning_lines_is_not_jsonl():
    raw = json.dumps([chat(), chat()], indent=2).encode()
    report = validate_chat_jsonl(raw)
    assert codes(report.errors) == [(1, "not_jsonl")]
    assert "JSON array" in report.errors[0].message


def test_json_array_on_one_line_is_not_jsonl():
    report = validate_chat_jsonl(b"\n" + json.dumps([chat(), chat()]).encode())
    assert codes(report.errors) == [(2, "not_jsonl")]


def test_pretty_printed_object_is_not_jsonl():
    report = validate_chat_jsonl(json.dumps(chat(), indent=2).encode())
    assert codes(report.errors) == [(1, "not_jsonl")]
    assert "several lines" in report.errors[0].message


def test_csv_is_not_jsonl():
    report = validate_chat_jsonl(b"prompt,completion\nhello,world\n")
    assert codes(report.errors) == [(1, "not_jsonl")]
    assert "CSV" in report.errors[0].message


def test_invalid_json_line():
    report = validate_chat_jsonl(jsonl(chat(), '{"messages": [}', chat()))
    assert codes(report.errors) == [(2, "invalid_json")]
    assert report.errors[0].message.startswith("Line 2: invalid JSON")


def test_non_utf8_line():
    raw = jsonl(chat()) + b'{"messages": "caf\xe9"}\n' + jsonl(chat())
    report = validate_chat_jsonl(raw)
    assert codes(report.errors) == [(2, "invalid_encoding")]
    assert "0xe9" in report.errors[0].message
    assert report.example_lines == [1, 3]


def test_utf16_file():
    report = validate_chat_jsonl("\ufeff".encode("utf-16-le") + json.dumps(chat()).encode("utf-16-le"))
    assert codes(report.errors) == [(1, "invalid_encoding")]


# ---------------------------------------------------------------------------------------------
# Cookbook format codes, one example each


def messages(*msgs: dict) -> dict:
    return {"messages": list(msgs)}


USER = {"role": "user", "content": "Hi"}
ASSISTANT = {"role": "assistant", "content": "Hello there."}


@pytest.mark.parametrize(
    ("example", "code"),
    [
        (["a", "list"], "data_type"),
        (messages(USER, "not a message", ASSISTANT), "data_type"),
        ({"messages": []}, "missing_messages_list"),
        ({"messages": "Hi"}, "missing_messages_list"),
        (messages({"content": "Hi"}, ASSISTANT), "message_missing_key"),
        (messages({"role": "user"}, ASSISTANT), "message_missing_key"),
        (messages({**USER, "timestamp": 1}, ASSISTANT), "message_unrecognized_key"),
        (messages({"role": "human", "content": "Hi"}, ASSISTANT), "unrecognized_role"),
        (messages({"role": "user", "content": None}, ASSISTANT), "missing_content"),
        (messages({"role": "user", "content": 42}, ASSISTANT), "missing_content"),
        (messages({"role": "user", "content": [{"type": "image_url"}]}, ASSISTANT), "missing_content"),
        (messages({"role": "assistant", "content": None}), "missing_content"),
        (messages(USER), "example_missing_assistant_message"),
        (messages({**USER, "weight": 1}, ASSISTANT), "invalid_weight"),
        (messages(USER, {**ASSISTANT, "weight": 0.5}), "invalid_weight"),
        (messages(USER, {**ASSISTANT, "weight": True}), "invalid_weight"),
        (messages(USER, {**ASSISTANT, "weight": 0}), "no_trained_assistant_message"),
        ({**chat(), "metadata": {}}, "example_unrecognized_key"),
    ],
)
def test_error_code_with_line_number(example, code):
    report = validate_chat_jsonl(jsonl(chat(), chat(user="other"), example))
    assert codes(report.errors) == [(3, code)]
    assert report.errors[0].message.startswith("Line 3: ")
    assert report.example_lines == [1, 2]


def test_legacy_prompt_completion_format_reports_both_problems():
    report = validate_chat_jsonl(jsonl({"prompt": "x", "completion": "y"}))
    assert codes(report.errors) == [
        (1, "example_unrecognized_key"),
        (1, "example_unrecognized_key"),
        (1, "missing_messages_list"),
    ]


def test_weight_zero_is_fine_when_another_assistant_message_is_trained():
    example = messages(USER, {**ASSISTANT, "weight": 0}, USER, {**ASSISTANT, "weight": 1})
    assert validate_chat_jsonl(jsonl(example)).ok


def test_check_example_count():
    issue = check_example_count(3)
    assert issue == DataIssue(
        None, "invalid_n_examples", "Training file has 3 example(s), but must have at least 10 examples"
    )
    assert check_example_count(10) is None


def test_validate_does_not_apply_the_minimum():
    assert validate_chat_jsonl(jsonl(chat())).ok


# ---------------------------------------------------------------------------------------------
# Function and tool calling


def test_tool_calling_example_is_valid():
    report = validate_chat_jsonl(jsonl(tool_example(), tool_example(parallel_tool_calls=False)))
    assert report.ok, report.errors
    assert report.examples[0]["tools"] == [WEATHER_TOOL]


def test_legacy_function_calling_example_is_valid():
    example = {
        "functions": [WEATHER_TOOL["function"]],
        "messages": [
            USER,
            {
                "role": "assistant",
                "content": None,
                "function_call": {"name": "get_weather", "arguments": '{"city": "Oslo"}'},
            },
            {"role": "function", "name": "get_weather", "content": '{"temp_c": 3}'},
            {"role": "assistant", "content": "It is 3 degrees C in Oslo."},
        ],
    }
    assert validate_chat_jsonl(jsonl(example)).ok


def with_message(index: int, message: dict) -> dict:
    example = tool_example()
    example["messages"][index] = message
    return example


CALL = {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}


@pytest.mark.parametrize(
    ("example", "code"),
    [
        (tool_example(tools={"get_weather": {}}), "invalid_tools"),
        (tool_example(tools=[WEATHER_TOOL["function"]]), "invalid_tools"),
        (tool_example(tools=[{"type": "function", "function": {"description": "no name"}}]), "invalid_tools"),
        (tool_example(tools=[{"type": "function", "function": {"name": "f", "parameters": "{}"}}]), "invalid_tools"),
        (tool_example(functions=[{"parameters": {}}]), "invalid_functions"),
        (tool_example(parallel_tool_calls="yes"), "invalid_parallel_tool_calls"),
        (with_message(2, {"role": "assistant", "tool_calls": []}), "invalid_tool_calls"),
        (with_message(2, {"role": "assistant", "tool_calls": [{**CALL, "id": None}]}), "invalid_tool_calls"),
        (with_message(2, {"role": "assistant", "tool_calls": [{**CALL, "type": "code"}]}), "invalid_tool_calls"),
        (
            with_message(
                2,
                {
                    "role": "assistant",
                    "tool_calls": [{**CALL, "function": {"name": "f", "arguments": {"city": "Paris"}}}],
                },
            ),
            "invalid_tool_calls",
        ),
        (
            with_message(
                2, {"role": "assistant", "tool_calls": [{**CALL, "function": {"name": "f", "arguments": "{city"}}]}
            ),
            "invalid_tool_calls",
        ),
        (
            with_message(2, {"role": "assistant", "tool_calls": [{**CALL, "function": {"arguments": "{}"}}]}),
            "invalid_tool_calls",
        ),
        (with_message(1, {"role": "user", "content": "Hi", "tool_calls": [CALL]}), "invalid_tool_calls"),
        (with_message(3, {"role": "tool", "content": "21"}), "message_missing_key"),
        (with_message(3, {"role": "tool", "tool_call_id": "call_9", "content": "21"}), "invalid_tool_call_id"),
        (with_message(3, {"role": "tool", "tool_call_id": "call_1"}), "message_missing_key"),
        (
            with_message(2, {"role": "assistant", "function_call": {"name": "f", "arguments": "[1]"}}),
            "invalid_function_call",
        ),
        (with_message(3, {"role": "function", "content": "21"}), "message_missing_key"),
    ],
)
def test_malformed_tool_data_is_an_error_with_line_number(example, code):
    report = validate_chat_jsonl(jsonl(tool_example(), example))
    assert code in {issue.code for issue in report.errors}
    assert {issue.line for issue in report.errors} == {2}
    assert report.example_lines == [1]


# ---------------------------------------------------------------------------------------------
# Warnings


def test_duplicate_example_names_the_earlier_line():
    report = validate_chat_jsonl(jsonl(chat(user="a"), chat(user="b"), chat(user="a")))
    assert report.ok
    assert line_warnings(report) == [(3, "duplicate_example")]
    assert "line 1" in report.warnings[0].message


def test_missing_system_and_user_messages():
    no_system = chat(system=None)
    no_user = messages({"role": "system", "content": "S"}, ASSISTANT)
    report = validate_chat_jsonl(jsonl(chat(), no_system, no_user))
    assert report.ok
    assert codes(report.warnings) == [(2, "missing_system_message"), (3, "missing_user_message")]


@pytest.mark.parametrize("reply", ["", " ", "k"])
def test_short_assistant_reply(reply):
    report = validate_chat_jsonl(jsonl(chat(system="A"), chat(reply=reply, system="B")))
    assert report.ok
    assert codes(report.warnings) == [(2, "short_assistant_reply")]


def test_two_character_reply_and_untrained_short_reply_are_fine():
    untrained = messages(
        {"role": "system", "content": "B"}, USER, {"role": "assistant", "content": "", "weight": 0}, USER, ASSISTANT
    )
    report = validate_chat_jsonl(jsonl(chat(reply="No", system="A"), untrained))
    assert report.ok and report.warnings == []


def test_identical_system_message_is_one_file_level_warning():
    report = validate_chat_jsonl(jsonl(*(chat(user=f"q{i}") for i in range(5))))
    assert codes(report.warnings) == [(None, "identical_system_message")]
    assert "5 examples" in report.warnings[0].message


def test_identical_system_message_needs_several_examples_all_with_that_message():
    assert validate_chat_jsonl(jsonl(chat())).warnings == []
    report = validate_chat_jsonl(jsonl(chat(user="a"), chat(user="b"), chat(user="c", system=None)))
    assert codes(report.warnings) == [(3, "missing_system_message")]


def test_a_reply_that_should_be_json_but_is_not_is_warned_about_with_its_line():
    asks = "Answer in JSON."
    report = validate_chat_jsonl(
        jsonl(
            chat(user="a", reply='{"answer": 4}', system=asks),
            chat(user="b", reply="The answer is 4.", system=asks),  # the system message asks for JSON
            chat(user="c", reply="Sure thing.", system="Be brief."),  # most replies are not JSON: fine
        )
    )
    assert report.ok and line_warnings(report) == [(2, "invalid_json_reply")]
    assert "messages[2]" in report.warnings[0].message and "asks for JSON" in report.warnings[0].message


def test_in_a_file_of_json_replies_the_other_replies_are_warned_about_at_the_end():
    fenced = '```json\n{"answer": 2}\n```'
    weather = {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}
    call = messages(USER, {"role": "assistant", "content": None, "tool_calls": [weather]})
    reply = {"role": "assistant", "content": "[1]"}
    untrained = messages(USER, {"role": "assistant", "content": "nope", "weight": 0}, USER, reply)
    report = validate_chat_jsonl(
        jsonl(
            *(chat(user=f"q{i}", reply=json.dumps({"answer": i}), system=f"S{i % 2}") for i in range(4)),
            chat(user="x", reply=fenced, system="S0"),
            chat(user="y", reply="Four.", system="S1"),
            call,  # a tool call is not a reply to judge
            untrained,  # nor an untrained one
        )
    )
    assert report.ok
    json_warnings = [(w.line, w.code) for w in report.warnings if w.code == "invalid_json_reply"]
    assert json_warnings == [(5, "invalid_json_reply"), (6, "invalid_json_reply")]
    fence, text = (w.message for w in report.warnings if w.code == "invalid_json_reply")
    assert "code fence" in fence and "5 of the file's 7 trained replies are JSON" in text


# ---------------------------------------------------------------------------------------------
# Auto hyperparameters


@pytest.mark.parametrize(
    ("n", "epochs"),
    [(1, 25), (3, 25), (10, 10), (20, 5), (33, 3), (34, 3), (40, 3), (8333, 3), (10_000, 2), (30_000, 1)],
)
def test_auto_n_epochs_follows_openai_rule(n, epochs):
    assert resolve_hyperparameters(n, None).n_epochs == epochs


@pytest.mark.parametrize(("n", "batch_size"), [(10, 1), (999, 1), (1000, 2), (10_000, 20), (1_000_000, 256)])
def test_auto_batch_size(n, batch_size):
    assert resolve_hyperparameters(n, {"batch_size": "auto"}).batch_size == batch_size


def test_auto_learning_rate_multiplier():
    assert resolve_hyperparameters(99, None).learning_rate_multiplier == 2.0
    assert resolve_hyperparameters(100, None).learning_rate_multiplier == 1.0


def test_requested_values_are_kept():
    requested = {"n_epochs": 7, "batch_size": "auto", "learning_rate_multiplier": 0.5}
    assert resolve_hyperparameters(20, requested) == Hyperparameters(
        n_epochs=7, batch_size=1, learning_rate_multiplier=0.5
    )
    assert resolve_hyperparameters(20, {"n_epochs": None}).n_epochs == 5


@pytest.mark.parametrize(
    ("requested", "param"),
    [
        ({"n_epochs": 0}, "hyperparameters.n_epochs"),
        ({"n_epochs": 51}, "hyperparameters.n_epochs"),
        ({"n_epochs": 2.5}, "hyperparameters.n_epochs"),
        ({"n_epochs": True}, "hyperparameters.n_epochs"),
        ({"n_epochs": "3"}, "hyperparameters.n_epochs"),
        ({"batch_size": 257}, "hyperparameters.batch_size"),
        ({"learning_rate_multiplier": 0}, "hyperparameters.learning_rate_multiplier"),
        ({"learning_rate_multiplier": float("nan")}, "hyperparameters.learning_rate_multiplier"),
        ({"learning_rate_multiplier": False}, "hyperparameters.learning_rate_multiplier"),
        ({"epochs": 3}, "hyperparameters.epochs"),
    ],
)
def test_invalid_requested_hyperparameters(requested, param):
    assert validate_requested_hyperparameters(requested)[0] == param
    with pytest.raises(ValueError):
        resolve_hyperparameters(20, requested)


def test_valid_requested_hyperparameters():
    assert validate_requested_hyperparameters(None) is None
    valid = {"n_epochs": 50, "batch_size": 256, "learning_rate_multiplier": 2}
    assert validate_requested_hyperparameters(valid) is None
    assert validate_requested_hyperparameters({"n_epochs": "auto", "batch_size": None}) is None


# ---------------------------------------------------------------------------------------------
# Pricing


def test_seed_example_costs_2_40():
    assert training_cost_usd("gpt-3.5-turbo", 100_000 * 3) == 2.40


@pytest.mark.parametrize(
    ("model", "cost"),
    [
        ("gpt-3.5-turbo-0125", 8.0),
        ("gpt-4o-mini-2024-07-18", 3.0),
        ("gpt-4o-2024-08-06", 25.0),
        ("gpt-4.1-nano", 1.5),
        ("babbage-002", 0.4),
        ("ft:gpt-3.5-turbo-0125:personal:mine:abc123", 8.0),
    ],
)
def test_model_names_resolve_to_their_family_price(model, cost):
    assert training_cost_usd(model, 1_000_000) == cost


def test_unknown_model_has_no_price():
    assert training_cost_usd("SmolLM2-135M-Instruct", 1_000_000) is None
    assert training_cost_usd("gpt-4", 1_000_000) is None
