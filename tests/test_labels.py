"""Loss labels for chat examples: the exact tokens that carry loss (openft.data.labels)."""

import pytest

from openft.data.labels import IGNORE_INDEX, render_example
from openft.settings import BUNDLED_MODEL


@pytest.fixture(scope="module")
def tokenizer(model_store):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(model_store / BUNDLED_MODEL)


def table(tokenizer, rendered):
    """(token text, trained?) for each token."""
    return [(tokenizer.decode([i]), label != IGNORE_INDEX) for i, label in zip(rendered.input_ids, rendered.labels)]


def trained_text(tokenizer, rendered):
    return tokenizer.decode([i for i, label in zip(rendered.input_ids, rendered.labels) if label != IGNORE_INDEX])


TWO_TURNS = {
    "messages": [
        {"role": "system", "content": "Be a pirate."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Ahoy!"},
        {"role": "user", "content": "Bye"},
        {"role": "assistant", "content": "Farewell."},
    ]
}


def test_two_turn_chat_exact_labels(tokenizer):
    rendered = render_example(tokenizer, TWO_TURNS, max_length=1024)

    # Only each reply's content and its <|im_end|> carry loss: not the system or user turns,
    # not the "<|im_start|>assistant\n" header, not the newline after <|im_end|>.
    assert table(tokenizer, rendered) == [
        ("<|im_start|>", False),
        ("system", False),
        ("\n", False),
        ("Be", False),
        (" a", False),
        (" pirate", False),
        (".", False),
        ("<|im_end|>", False),
        ("\n", False),
        ("<|im_start|>", False),
        ("user", False),
        ("\n", False),
        ("Hi", False),
        ("<|im_end|>", False),
        ("\n", False),
        ("<|im_start|>", False),
        ("ass", False),
        ("istant", False),
        ("\n", False),
        ("Ah", True),
        ("oy", True),
        ("!", True),
        ("<|im_end|>", True),
        ("\n", False),
        ("<|im_start|>", False),
        ("user", False),
        ("\n", False),
        ("By", False),
        ("e", False),
        ("<|im_end|>", False),
        ("\n", False),
        ("<|im_start|>", False),
        ("ass", False),
        ("istant", False),
        ("\n", False),
        ("F", True),
        ("are", True),
        ("well", True),
        (".", True),
        ("<|im_end|>", True),
        ("\n", False),
    ]
    # labels are the token ids themselves (unshifted), -100 elsewhere
    assert all(label in (token, IGNORE_INDEX) for token, label in zip(rendered.input_ids, rendered.labels))
    # the whole text is the chat template's rendering, tokenized once
    assert (
        rendered.input_ids
        == tokenizer(tokenizer.apply_chat_template(TWO_TURNS["messages"], tokenize=False), add_special_tokens=False)[
            "input_ids"
        ]
    )
    assert rendered.truncated is False


def test_every_trained_reply_ends_with_end_of_turn(tokenizer):
    rendered = render_example(tokenizer, TWO_TURNS, max_length=1024)
    eos = tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert trained_text(tokenizer, rendered) == "Ahoy!<|im_end|>Farewell.<|im_end|>"
    assert rendered.labels.count(eos) == 2


def test_weight_zero_reply_carries_no_loss(tokenizer):
    example = {"messages": [dict(m) for m in TWO_TURNS["messages"]]}
    example["messages"][2]["weight"] = 0
    rendered = render_example(tokenizer, example, max_length=1024)
    assert trained_text(tokenizer, rendered) == "Farewell.<|im_end|>"
    # the text itself is unchanged: weight only decides the loss
    assert rendered.input_ids == render_example(tokenizer, TWO_TURNS, max_length=1024).input_ids

    example["messages"][4]["weight"] = 0
    assert set(render_example(tokenizer, example, max_length=1024).labels) == {IGNORE_INDEX}


def test_truncation_keeps_the_start(tokenizer):
    full = render_example(tokenizer, TWO_TURNS, max_length=1024)
    cut = render_example(tokenizer, TWO_TURNS, max_length=22)
    assert cut.truncated is True
    assert cut.input_ids == full.input_ids[:22] and cut.labels == full.labels[:22]
    assert render_example(tokenizer, TWO_TURNS, max_length=len(full.input_ids)).truncated is False


def test_default_system_prompt_is_not_trained(tokenizer):
    # SmolLM2's template inserts its own system prompt when the first message is not a system one
    example = {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Ahoy!"}]}
    rendered = render_example(tokenizer, example, max_length=1024)
    assert tokenizer.decode(rendered.input_ids).startswith("<|im_start|>system\nYou are a helpful AI assistant")
    assert trained_text(tokenizer, rendered) == "Ahoy!<|im_end|>"


def test_tool_calls_are_rendered_and_trained(tokenizer):
    # SmolLM2's template ignores tools and tool_calls: openft folds them into the text (Hermes style)
    example = {
        "messages": [
            {"role": "user", "content": "Weather in Paris?"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                    },
                ],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
            {"role": "assistant", "content": "Sunny."},
        ],
        "tools": [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}],
    }
    rendered = render_example(tokenizer, example, max_length=1024)
    text = tokenizer.decode(rendered.input_ids)
    assert text.startswith("<|im_start|>system\n# Tools\n") and '"name": "get_weather"' in text
    assert trained_text(tokenizer, rendered) == (
        '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call><|im_end|>Sunny.<|im_end|>'
    )


def test_legacy_function_call_is_trained_like_tool_calls(tokenizer):
    example = {
        "messages": [
            {"role": "user", "content": "Weather?"},
            {"role": "assistant", "function_call": {"name": "get_weather", "arguments": '{"city": "Paris"}'}},
            {"role": "function", "name": "get_weather", "content": "sunny"},
            {"role": "assistant", "content": "Sunny.", "weight": 0},
        ],
        "functions": [{"name": "get_weather", "parameters": {"type": "object"}}],
    }
    rendered = render_example(tokenizer, example, max_length=1024)
    assert trained_text(tokenizer, rendered) == (
        '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call><|im_end|>'
    )


def test_trained_reply_that_opens_the_conversation_is_refused(tokenizer):
    with pytest.raises(ValueError, match="start the example with a system or user message"):
        render_example(tokenizer, {"messages": [{"role": "assistant", "content": "Ahoy!"}]}, max_length=64)
    opening = {"messages": [{"role": "assistant", "content": "Ahoy!", "weight": 0}, {"role": "user", "content": "Hi"}]}
    assert set(render_example(tokenizer, opening, max_length=64).labels) == {IGNORE_INDEX}
