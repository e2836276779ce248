"""The families users bring, each with its published chat template and its architecture's
features at toy size (tests/tiny_models.py REAL_FAMILIES, tests/templates/).

Per family, without a server: a multi-turn chat with a system message, tools and a `weight: 0`
reply trains exactly the trained replies and their end-of-turn tokens, and for each trained
reply the token ids training puts before it are the ids the server prompts with for that
conversation (no train/serve skew)."""

import pytest
from transformers import AutoTokenizer

from openft.data.chat_format import ChatTemplate
from openft.data.labels import IGNORE_INDEX, ReplyNotAfterPrompt, probe_template, render_example
from tests.tiny_models import REAL_FAMILIES

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "The weather in a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
    }
]
CHAT = {
    "tools": TOOLS,
    "messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello!"},
        {"role": "user", "content": "Weather?"},
        {"role": "assistant", "content": "Sunny.", "weight": 0},
        {"role": "user", "content": "Again"},
        {"role": "assistant", "content": "Hello again!"},
    ],
}
TRAINED = ("Hello!", "Hello again!")
# what a family's template writes into a reply besides its content (Qwen3: an empty think block
# in a turn after the last user message, which each trained reply is, in its own sequence)
REPLY_PREFIX = {"qwen3": "<think>\n\n</think>\n\n", "mistral-v0.3": " ", "mistral-small-3.2": ""}
END_OF_TURN = {"gemma-2": "<end_of_turn>", "gemma-3": "<end_of_turn>", "phi-3.5": "<|end|>"}
REFUSED = {  # a template whose reply does not follow its own generation prompt
    "deepseek-r1-distill-qwen": "<｜Assistant｜><think>\n",
}
FAMILIES = sorted(REAL_FAMILIES)
LABELLED = [family for family in FAMILIES if family not in REFUSED]


@pytest.fixture(scope="module")
def tokenizers(family_models):
    return {family: AutoTokenizer.from_pretrained(path) for family, path in family_models.items()}


@pytest.mark.parametrize("family", LABELLED)
def test_each_family_trains_its_replies_with_the_prompts_the_server_feeds(tokenizers, family):
    tokenizer = tokenizers[family]
    rendered = render_example(tokenizer, CHAT, max_length=2048)
    sequences = rendered.sequences()
    end = END_OF_TURN.get(family, tokenizer.eos_token)
    for j, message in enumerate(CHAT["messages"]):
        if message["role"] != "assistant":
            continue
        prompt = ChatTemplate(tokenizer).prompt_ids(CHAT["messages"][:j], TOOLS)
        hits = [
            labels[len(prompt) :]
            for ids, labels in sequences
            if ids[: len(prompt)] == prompt and len(ids) > len(prompt) and labels[len(prompt) - 1] == IGNORE_INDEX
        ]
        if message.get("weight", 1) == 0:
            assert not any(labels and labels[0] != IGNORE_INDEX for labels in hits), family
            continue
        [labels] = [labels for labels in hits if labels[0] != IGNORE_INDEX]  # once, right after its prompt
        trained = labels[: labels.index(IGNORE_INDEX) if IGNORE_INDEX in labels else len(labels)]
        text = tokenizer.decode(trained)
        assert text == REPLY_PREFIX.get(family, "") + message["content"] + end, (family, text)
    trained = tokenizer.decode([label for label in rendered.labels if label != IGNORE_INDEX])
    assert sorted(trained.split(end)) == sorted(["", *(REPLY_PREFIX.get(family, "") + reply for reply in TRAINED)])
    probe_template(tokenizer)  # an add accepts it


@pytest.mark.parametrize("family", sorted(REFUSED))
def test_a_family_whose_reply_does_not_follow_its_generation_prompt_is_refused(tokenizers, family):
    with pytest.raises(ReplyNotAfterPrompt):
        probe_template(tokenizers[family])
    prompt = tokenizers[family].decode(ChatTemplate(tokenizers[family]).prompt_ids(CHAT["messages"][:2]))
    assert REFUSED[family] in prompt
