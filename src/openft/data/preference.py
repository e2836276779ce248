"""A preference (DPO) example as the two chat examples that are compared.

OpenAI's DPO line is `{"input": {"messages", "tools", "parallel_tool_calls"}, "preferred_output":
[reply], "non_preferred_output": [reply]}` (validated by `openft.data.validate`). Each side is the
input's conversation followed by that side's reply, rendered and labelled by the one label path
(`openft.data.labels`), so the trainer, the data check and `--show` see the same tokens. Only the
final reply is trained ("we only train on one-turn conversations", OpenAI's guide): the input's own
assistant turns get weight 0, so they are context, as in the prompt both sides share.
"""

from __future__ import annotations

SIDES = ("chosen", "rejected")  # TRL's names for the preferred and the non-preferred side


def preference_chats(example: dict) -> tuple[dict, dict]:
    """(chosen, rejected): the conversation ending with the preferred reply, and with the other."""
    given = example["input"]
    context = [{**message, "weight": 0} if message["role"] == "assistant" else message for message in given["messages"]]
    tools = {key: given[key] for key in ("tools", "functions", "parallel_tool_calls") if key in given}
    return tuple(
        {"messages": [*context, example[key][0]], **tools} for key in ("preferred_output", "non_preferred_output")
    )
