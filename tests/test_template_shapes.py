"""The label path on the chat-template shapes of six families (tests/tiny_models.py): ChatML
(Qwen2, Qwen3), no system role (Gemma), a template that writes BOS itself (Llama 3), one that
ends a conversation with EOS (Phi-3), and one that drops the system message once the assistant
answers (Mistral v0.3: folded into the first user turn, as for Gemma). Training
(`render_example`) and inference (`ChatTemplate.prompt_ids`) must see the same tokens, a reply
must end where the engine stops, and only a template whose reply does not follow its generation
prompt is refused. The published templates of each family are in tests/test_families.py."""

import pytest
from transformers import AutoTokenizer

from openft.data.chat_format import ChatTemplate
from openft.data.labels import IGNORE_INDEX, ReplyNotAfterPrompt, probe_template, render_example

CHAT = {
    "messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello!"},
        {"role": "user", "content": "Again"},
        {"role": "assistant", "content": "Hello again!"},
    ]
}
THINK_CLOSED = (
    "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n<think>\n</think>\n{% endif %}"
)
PROMPT_REWRITTEN = (  # prompts with the last user turn upper-cased, which the replies never follow
    "{% for m in messages %}<|im_start|>{{ m.role }}\n"
    "{{ m.content | upper if add_generation_prompt and loop.last else m.content }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
# what each family trains: every reply's content and its end-of-turn token, nothing else
END_OF_TURN = {
    "llama": "<|eot_id|>",
    "qwen2": "<|im_end|>",
    "qwen3": "<|im_end|>",
    "gemma": "<end_of_turn>",
    "phi3": "<|end|>",
    "mistral": "</s>",
}


@pytest.fixture(scope="module")
def tokenizers(tiny_models):
    return {name: AutoTokenizer.from_pretrained(path) for name, path in tiny_models.items()}


def trained_tokens(tokenizer, rendered) -> list[str]:
    return tokenizer.convert_ids_to_tokens([i for i, label in zip(rendered.input_ids, rendered.labels) if label >= 0])


@pytest.mark.parametrize("family", sorted(END_OF_TURN))
def test_each_family_trains_exactly_its_replies_and_their_end_of_turn(tokenizers, family):
    tokenizer = tokenizers[family]
    rendered = render_example(tokenizer, CHAT, max_length=1024)

    trained = tokenizer.convert_tokens_to_string(trained_tokens(tokenizer, rendered))
    space = " " if family == "mistral" else ""  # its replies follow "[/INST]" after a space
    end = END_OF_TURN[family]
    assert trained == f"{space}Hello!{end}{space}Hello again!{end}"
    assert probe_template(tokenizer) == []


def test_gemma_gets_the_system_message_in_its_first_user_turn(tokenizers):
    tokenizer = tokenizers["gemma"]  # its template raises "System role not supported"
    text = tokenizer.decode(render_example(tokenizer, CHAT, max_length=1024).input_ids)
    assert text.startswith("<bos><start_of_turn>user\nBe brief.\n\nHi<end_of_turn>\n<start_of_turn>model\nHello!")
    # inference folds it the same way
    prompt = ChatTemplate(tokenizer).prompt_ids(CHAT["messages"][:2])
    assert tokenizer.decode(prompt) == "<bos><start_of_turn>user\nBe brief.\n\nHi<end_of_turn>\n<start_of_turn>model\n"


def test_phi3_end_of_conversation_is_rendered_but_not_trained(tokenizers):
    tokenizer = tokenizers["phi3"]
    rendered = render_example(tokenizer, CHAT, max_length=1024)
    tokens = tokenizer.convert_ids_to_tokens(rendered.input_ids)
    assert tokens[-3:] == ["<|end|>", "Ċ", "<|endoftext|>"]
    assert rendered.labels[-3] != IGNORE_INDEX and rendered.labels[-2:] == [IGNORE_INDEX, IGNORE_INDEX]
    assert ChatTemplate(tokenizer).conversation_end == "<|endoftext|>"
    assert ChatTemplate(tokenizers["qwen2"]).conversation_end == ""


@pytest.mark.parametrize("family", sorted(END_OF_TURN))
def test_training_and_inference_see_one_bos_and_the_same_prompt_tokens(tokenizers, family):
    tokenizer = tokenizers[family]
    train_ids = render_example(tokenizer, CHAT, max_length=1024).input_ids
    prompt_ids = ChatTemplate(tokenizer).prompt_ids(CHAT["messages"][:4])
    bos = tokenizer.bos_token_id
    if bos is not None:
        assert train_ids[:2].count(bos) == prompt_ids[:2].count(bos) == (train_ids[0] == bos)
    assert train_ids[: len(prompt_ids)] == prompt_ids


def test_a_prompt_is_tokenized_where_training_cuts_it(tokenizers):
    """The tiny Llama borrows a tokenizer that reads "\\n\\n" before text as two tokens and at the
    end of a text as one: cut at the end of each generation prompt, both sides read one."""
    tokenizer = tokenizers["llama"]
    prompt = ChatTemplate(tokenizer).prompt_ids(CHAT["messages"][:4])
    assert tokenizer.convert_ids_to_tokens(prompt[-1:]) == ["ĊĊ"]
    rendered = render_example(tokenizer, CHAT, max_length=1024)
    assert rendered.labels[len(prompt) - 1] == IGNORE_INDEX and rendered.labels[len(prompt)] != IGNORE_INDEX
    first = ChatTemplate(tokenizer).prompt_ids(CHAT["messages"][:2])  # cut alike inside the second prompt
    assert prompt[: len(first)] == first


def test_mistral_v3_gets_the_system_message_in_its_first_user_turn(tokenizers):
    tokenizer = tokenizers["mistral"]  # its own template writes it into the last user turn, or nowhere
    text = tokenizer.decode(render_example(tokenizer, CHAT, max_length=1024).input_ids)
    assert text.startswith("<s>[INST] Be brief.\n\nHi[/INST] Hello!</s>[INST] Again[/INST]")


def test_a_reply_is_trained_after_a_generation_prompt_that_says_more_than_its_header(tokenizers):
    tokenizer = AutoTokenizer.from_pretrained(tokenizers["qwen2"].name_or_path)
    tokenizer.chat_template = THINK_CLOSED  # as DeepSeek-R1 distills: replies are written without it
    rendered = render_example(tokenizer, CHAT, max_length=1024)
    first, second = rendered.sequences()  # the whole conversation holds neither reply so
    for (ids, labels), j in zip((first, second), (4, 2)):
        prompt = ChatTemplate(tokenizer).prompt_ids(CHAT["messages"][:j])
        assert ids[: len(prompt)] == prompt and tokenizer.decode(prompt).endswith("<think>\n</think>\n")
        assert tokenizer.decode([label for label in labels if label != IGNORE_INDEX]) == (
            CHAT["messages"][j]["content"] + "<|im_end|>"
        )


def test_a_template_whose_prompt_renders_the_conversation_otherwise_is_refused(tokenizers):
    tokenizer = AutoTokenizer.from_pretrained(tokenizers["qwen2"].name_or_path)
    tokenizer.chat_template = PROMPT_REWRITTEN
    with pytest.raises(ReplyNotAfterPrompt):
        render_example(tokenizer, CHAT, max_length=1024)
    with pytest.raises(ReplyNotAfterPrompt):
        probe_template(tokenizer)


@pytest.mark.parametrize(("family", "stop"), [("gemma", "<end_of_turn>"), ("phi3", "<|end|>")])
def test_a_base_stops_at_its_generation_configs_end_of_turn(tiny_models, family, stop):
    from openft.inference.local import LoadedBase

    base = LoadedBase(tiny_models[family], transformers_only=False)
    assert base.tokenizer.convert_tokens_to_ids(stop) in base.stop_ids
    assert base.tokenizer.eos_token_id in base.stop_ids
