"""Crafted training files, one per validation error code and warning code, for the API tests and the
CLI tests to share."""

import json


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


def pair(i: int, preferred: str | None = None, rejected: str | None = None) -> dict:
    """A DPO example (OpenAI's preference format)."""
    return {
        "input": {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": f"Q{i}?"}]},
        "preferred_output": [{"role": "assistant", "content": preferred or f"Ahoy! A{i}."}],
        "non_preferred_output": [{"role": "assistant", "content": rejected or f"A{i}."}],
    }


def dpo_third_line(bad: dict) -> bytes:
    return jsonl(pair(1), pair(2), bad, pair(3))


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
    "dpo_example_in_supervised_file": (third_line(pair(9)), 3),
    "supervised_example_in_dpo_file": (dpo_third_line(chat(9)), 3),
    "missing_input": (dpo_third_line({key: value for key, value in pair(9).items() if key != "input"}), 3),
    "invalid_preference_output": (dpo_third_line({**pair(9), "non_preferred_output": []}), 3),
}


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
    "invalid_json_reply": (ten_around(with_messages({"role": "system", "content": "Answer in JSON."}, USER, REPLY)), 3),
    "identical_preference_outputs": (
        jsonl(pair(1), pair(2), pair(9, "Paris.", "Paris."), *(pair(i) for i in range(3, 12))),
        3,
    ),
}
