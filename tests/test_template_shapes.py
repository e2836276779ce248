"""The label path on the chat-template shapes of six families (tests/tiny_models.py): ChatML
(Qwen2, Qwen3), no system role (Gemma), a template that writes BOS itself (Llama 3), one that
ends a conversation with EOS (Phi-3), and one that rewrites earlier turns (Mistral v0.3), which
must be refused rather than mislabelled. Training (`render_example`) and inference
(`ChatTemplate.prompt_ids`) must see the same tokens, and a reply must end where the engine
stops."""

import pytest
from transformers import AutoTokenizer

from openft.data.chat_format import ChatTemplate
from openft.data.labels import IGNORE_INDEX, TurnsRewritten, probe_template, render_example
from tests.tiny_models import MISTRAL_FIXED

CHAT = {
    "messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello!"},
        {"role": "user", "content": "Again"},
        {"role": "assistant", "content": "Hello again!"},
    ]
}
# what each family trains: every reply's content and its end-of-turn token, nothing else
END_OF_TURN = {
    "llama": "<|eot_id|>",
    "qwen2": "<|im_end|>",
    "qwen3": "<|im_end|>",
    "gemma": "<end_of_turn>",
    "phi3": "<|end|>",
    "mistral": "</s>",  # with MISTRAL_FIXED
}


@pytest.fixture(scope="module")
def tokenizers(tiny_models):
    loaded = {name: AutoTokenizer.from_pretrained(path) for name, path in tiny_models.items()}
    loaded["mistral"].chat_template = MISTRAL_FIXED
    return loaded


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
    if family != "llama":  # see test_llama_prompt_boundary_mismatch_is_a_warning
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
def test_training_and_inference_see_one_bos(tokenizers, family):
    tokenizer = tokenizers[family]
    train_ids = render_example(tokenizer, CHAT, max_length=1024).input_ids
    prompt_ids = ChatTemplate(tokenizer).prompt_ids(CHAT["messages"][:4])
    bos = tokenizer.bos_token_id
    if bos is not None:
        assert train_ids[:2].count(bos) == prompt_ids[:2].count(bos) == (train_ids[0] == bos)
    if family != "llama":  # the bundled tokenizer merges Llama 3's "\n\n" with what follows it
        assert train_ids[: len(prompt_ids)] == prompt_ids


def test_llama_prompt_boundary_mismatch_is_a_warning(tokenizers):
    """The tiny Llama borrows a tokenizer that splits "\\n\\n" before text but not at the end of a
    prompt; the probe says so rather than passing silently."""
    [warning] = probe_template(tokenizers["llama"])
    assert "'ĊĊ'" in warning and "training splits differently" in warning


def test_a_generation_prompt_ending_in_a_space_is_a_warning(tokenizers):
    tokenizer = AutoTokenizer.from_pretrained(tokenizers["qwen2"].name_or_path)
    tokenizer.chat_template = (
        "{% for m in messages %}{{ m.role | upper }}: {{ m.content }}\n{% endfor %}"
        "{% if add_generation_prompt %}ASSISTANT: {% endif %}"
    )
    [warning] = probe_template(tokenizer)
    assert "Ġ" in warning


def test_a_template_that_rewrites_earlier_turns_is_refused(tiny_models):
    tokenizer = AutoTokenizer.from_pretrained(tiny_models["mistral"])  # v0.3: system into the last user turn
    with pytest.raises(TurnsRewritten):
        render_example(tokenizer, CHAT, max_length=1024)
    with pytest.raises(TurnsRewritten):
        probe_template(tokenizer)


@pytest.mark.parametrize(("family", "stop"), [("gemma", "<end_of_turn>"), ("phi3", "<|end|>")])
def test_a_base_stops_at_its_generation_configs_end_of_turn(tiny_models, family, stop):
    from openft.inference.local import LoadedBase

    base = LoadedBase(tiny_models[family], transformers_only=False)
    assert base.tokenizer.convert_tokens_to_ids(stop) in base.stop_ids
    assert base.tokenizer.eos_token_id in base.stop_ids
