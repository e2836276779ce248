"""Tiny random-weight chat models of other architectures, built offline: a transformers config
of each family at toy size, the bundled model's tokenizer with that family's special tokens and
chat template. Their answers are noise; what they test is that openft adds, checks, trains and
serves a base of each shape (architecture and template) without knowing it in advance."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

CHATML = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}{% endif %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
# Gemma's: no system role (it raises), 'model' for the assistant, its own BOS.
GEMMA = (
    "{{ bos_token }}{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}"
    "{% endif %}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
    "{% if (message['role'] == 'assistant') %}{% set role = 'model' %}{% else %}{% set role = message['role'] %}"
    "{% endif %}{{ '<start_of_turn>' + role + '\\n' + message['content'] | trim + '<end_of_turn>\\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{'<start_of_turn>model\\n'}}{% endif %}"
)
# Llama 3's: BOS written by the template (the tokenizer would add a second one if asked to).
LLAMA3 = (
    "{% set loop_messages = messages %}{% for message in loop_messages %}"
    "{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' + message['content'] | trim"
    " + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}"
)
# Mistral v0.3's (the gist of it): the system message goes into the *last* user turn while a user
# turn is last, and nowhere once the assistant answers; openft folds it into the first user turn.
MISTRAL_V3 = (
    "{%- if messages[0]['role'] == 'system' %}{%- set system_message = messages[0]['content'] %}"
    "{%- set loop_messages = messages[1:] %}{%- else %}{%- set loop_messages = messages %}{%- endif %}"
    "{{- bos_token }}{%- for message in loop_messages %}"
    "{%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{- raise_exception('After the optional system message, conversation roles must alternate "
    "user/assistant/user/assistant/...') }}"
    "{%- endif %}{%- if message['role'] == 'user' %}{%- if loop.last and system_message is defined %}"
    "{{- '[INST] ' + system_message + '\\n\\n' + message['content'] + '[/INST]' }}{%- else %}"
    "{{- '[INST] ' + message['content'] + '[/INST]' }}{%- endif %}{%- elif message['role'] == 'assistant' %}"
    "{{- ' ' + message['content'] + eos_token}}{%- endif %}{%- endfor %}"
)
# A template a user could pass with --chat-template: the system message in the *first* user turn.
MISTRAL_FIXED = (
    "{%- if messages[0]['role'] == 'system' %}{%- set system_message = messages[0]['content'] %}"
    "{%- set loop_messages = messages[1:] %}{%- else %}{%- set loop_messages = messages %}{%- endif %}"
    "{{- bos_token }}{%- for message in loop_messages %}{%- if message['role'] == 'user' %}"
    "{%- if loop.first and system_message is defined %}"
    "{{- '[INST] ' + system_message + '\\n\\n' + message['content'] + '[/INST]' }}"
    "{%- else %}{{- '[INST] ' + message['content'] + '[/INST]' }}{%- endif %}"
    "{%- elif message['role'] == 'assistant' %}{{- ' ' + message['content'] + eos_token}}{%- endif %}{%- endfor %}"
)
# Phi-3's: a conversation rendered without the generation prompt ends with EOS.
PHI3 = (
    "{% for message in messages %}{% if message['role'] == 'system' %}"
    "{{'<|system|>\\n' + message['content'] + '<|end|>\\n'}}"
    "{% elif message['role'] == 'user' %}{{'<|user|>\\n' + message['content'] + '<|end|>\\n'}}"
    "{% elif message['role'] == 'assistant' %}{{'<|assistant|>\\n' + message['content'] + '<|end|>\\n'}}{% endif %}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|assistant|>\\n' }}{% else %}{{ eos_token }}{% endif %}"
)

SIZE = {
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": 4096,
}


@dataclass(frozen=True)
class Family:
    config_class: str
    template: str
    bos: str | None
    eos: str
    special: tuple[str, ...] = ()
    stop: tuple[str, ...] = ()  # more end-of-turn tokens: only in the generation config's eos list, as in the real ones
    bos_added: bool = False  # the tokenizer itself prepends BOS when asked to add special tokens
    config: dict = field(default_factory=dict)


FAMILIES = {
    "llama": Family(
        "LlamaConfig",
        LLAMA3,
        "<|begin_of_text|>",
        "<|eot_id|>",
        ("<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"),
        bos_added=True,
    ),
    "mistral": Family(
        "MistralConfig",
        MISTRAL_V3,
        "<s>",
        "</s>",
        ("<s>", "</s>", "[INST]", "[/INST]"),
        bos_added=True,
        config={"sliding_window": None},
    ),
    "qwen2": Family("Qwen2Config", CHATML, None, "<|im_end|>"),
    "qwen3": Family("Qwen3Config", CHATML, None, "<|im_end|>", config={"head_dim": 16}),
    "gemma": Family(
        "GemmaConfig",
        GEMMA,
        "<bos>",
        "<eos>",
        ("<bos>", "<eos>", "<start_of_turn>", "<end_of_turn>"),
        stop=("<end_of_turn>",),
        bos_added=True,
        config={"head_dim": 16},
    ),
    "phi3": Family(
        "Phi3Config",
        PHI3,
        None,
        "<|endoftext|>",
        ("<|system|>", "<|user|>", "<|assistant|>", "<|end|>"),
        stop=("<|end|>",),
        config={"pad_token_id": 0},
    ),
}


def build(family_name: str, tokenizer_source: Path, target: Path, seed: int = 0) -> Path:
    """A random-weight `family_name` model with its chat template, saved as an HF directory."""
    import torch
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer

    family = FAMILIES[family_name]
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_source)
    tokenizer.add_special_tokens({"additional_special_tokens": list(family.special)})
    tokenizer.bos_token = family.bos
    tokenizer.eos_token = family.eos
    tokenizer.pad_token = family.eos
    tokenizer.chat_template = family.template
    ids = lambda *tokens: [tokenizer.convert_tokens_to_ids(t) for t in tokens]  # noqa: E731
    config = getattr(transformers, family.config_class)(
        **SIZE,
        vocab_size=len(tokenizer),
        tie_word_embeddings=True,
        bos_token_id=ids(family.bos)[0] if family.bos else None,
        eos_token_id=ids(family.eos)[0],
        **family.config,
    )
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config)
    if family.stop:
        model.generation_config.eos_token_id = ids(family.eos, *family.stop)
    shutil.rmtree(target, ignore_errors=True)
    model.save_pretrained(target)
    tokenizer.save_pretrained(target)
    if family.bos_added:
        _prepend_bos(target / "tokenizer.json", family.bos, ids(family.bos)[0])
    return target


def _prepend_bos(tokenizer_json: Path, bos: str, bos_id: int) -> None:
    """Make the tokenizer add BOS itself, as Llama's, Mistral's and Gemma's do."""
    data = json.loads(tokenizer_json.read_text())
    data["post_processor"] = {
        "type": "TemplateProcessing",
        "single": [{"SpecialToken": {"id": bos, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
        "pair": [
            {"SpecialToken": {"id": bos, "type_id": 0}},
            {"Sequence": {"id": "A", "type_id": 0}},
            {"Sequence": {"id": "B", "type_id": 1}},
        ],
        "special_tokens": {bos: {"id": bos, "ids": [bos_id], "tokens": [bos]}},
    }
    tokenizer_json.write_text(json.dumps(data))


# ---------------------------------------------------------------------------------------------
# The families users bring (issue 26): each with its published chat template (tests/templates/,
# byte for byte) and its published architecture's structural features at toy size. The
# tokenizer is still the bundled one with the family's special tokens added: no family's own
# tokenizer is reachable offline, and the template, not the vocabulary, decides how replies are
# labelled and prompted.

TEMPLATES = Path(__file__).parent / "templates"
LLAMA3_TOKENS = ("<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>", "<|eom_id|>", "<|python_tag|>")  # fmt: skip  # noqa: E501
CHATML_TOKENS = ("<|im_start|>", "<|im_end|>", "<|endoftext|>")
MISTRAL_TOKENS = ("<s>", "</s>", "[INST]", "[/INST]", "[AVAILABLE_TOOLS]", "[/AVAILABLE_TOOLS]", "[TOOL_CALLS]", "[TOOL_RESULTS]", "[/TOOL_RESULTS]")  # fmt: skip  # noqa: E501
GEMMA_TOKENS = ("<bos>", "<eos>", "<start_of_turn>", "<end_of_turn>", "<start_of_image>")
THINK_TOKENS = ("<think>", "</think>", "<tool_call>", "</tool_call>")  # added, not special, as in Qwen3's tokenizer
LLAMA3_ROPE = {"rope_type": "llama3", "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}  # fmt: skip  # noqa: E501


@dataclass(frozen=True)
class RealFamily:
    config_class: str
    template_file: str  # in tests/templates/
    bos: str | None
    eos: str  # the tokenizer's EOS: the end of turn where the family's tokenizer says so
    special: tuple[str, ...] = ()
    stop: tuple[str, ...] = ()  # the generation config's other EOS ids, as published
    bos_added: bool = False
    added: tuple[str, ...] = ()  # added tokens that are not special
    config: dict = field(default_factory=dict)

    @property
    def template(self) -> str:
        return (TEMPLATES / self.template_file).read_text()


REAL_FAMILIES = {
    "llama-3.1": RealFamily(
        "LlamaConfig", "meta-llama-Llama-3.1-8B-Instruct.jinja", "<|begin_of_text|>", "<|eot_id|>", LLAMA3_TOKENS,
        stop=("<|end_of_text|>", "<|eom_id|>"), bos_added=True,
        config={"rope_theta": 500000.0, "rope_scaling": {**LLAMA3_ROPE, "factor": 8.0}, "tie_word_embeddings": False,
                "max_position_embeddings": 131072},
    ),
    "llama-3.2": RealFamily(
        "LlamaConfig", "meta-llama-Llama-3.2-3B-Instruct.jinja", "<|begin_of_text|>", "<|eot_id|>", LLAMA3_TOKENS,
        stop=("<|end_of_text|>", "<|eom_id|>"), bos_added=True,
        config={"rope_theta": 500000.0, "rope_scaling": {**LLAMA3_ROPE, "factor": 32.0}, "tie_word_embeddings": True,
                "max_position_embeddings": 131072},
    ),
    "qwen2.5": RealFamily(
        "Qwen2Config", "Qwen-Qwen2.5-7B-Instruct.jinja", None, "<|im_end|>", CHATML_TOKENS,
        stop=("<|endoftext|>",), added=THINK_TOKENS[2:],
        config={"rope_theta": 1000000.0, "tie_word_embeddings": False, "use_sliding_window": False},
    ),
    "qwen3": RealFamily(
        "Qwen3Config", "Qwen-Qwen3-0.6B.jinja", None, "<|im_end|>", CHATML_TOKENS,
        stop=("<|endoftext|>",), added=THINK_TOKENS,
        config={"head_dim": 32, "rope_theta": 1000000.0, "tie_word_embeddings": True},
    ),
    "mistral-v0.3": RealFamily(
        "MistralConfig", "mistralai-Mistral-7B-Instruct-v0.3.jinja", "<s>", "</s>", MISTRAL_TOKENS, bos_added=True,
        config={"sliding_window": None, "rope_theta": 1000000.0, "tie_word_embeddings": False},
    ),
    "mistral-small-3.2": RealFamily(
        "MistralConfig", "Mistral-Small-3.2-24B-Instruct-2506.jinja", "<s>", "</s>",
        (*MISTRAL_TOKENS, "[SYSTEM_PROMPT]", "[/SYSTEM_PROMPT]", "[ARGS]", "[CALL_ID]"), bos_added=True,
        config={"sliding_window": None, "head_dim": 32, "rope_theta": 1000000000.0, "tie_word_embeddings": False},
    ),
    "gemma-2": RealFamily(
        "Gemma2Config", "google-gemma-2-2b-it.jinja", "<bos>", "<eos>", GEMMA_TOKENS, stop=("<end_of_turn>",),
        bos_added=True,
        config={
            "head_dim": 16, "query_pre_attn_scalar": 16, "sliding_window": 4096, "attn_logit_softcapping": 50.0,
            "final_logit_softcapping": 30.0, "hidden_activation": "gelu_pytorch_tanh",
        },
    ),
    "gemma-3": RealFamily(
        "Gemma3TextConfig", "google-gemma-3-270m-it.jinja", "<bos>", "<eos>", GEMMA_TOKENS, stop=("<end_of_turn>",),
        bos_added=True,
        config={
            "head_dim": 16, "query_pre_attn_scalar": 16, "sliding_window": 512, "rope_theta": 1000000.0,
            "rope_local_base_freq": 10000.0, "layer_types": ["sliding_attention"] * 5 + ["full_attention"],
            "num_hidden_layers": 6, "num_key_value_heads": 1,
        },
    ),
    "phi-3.5": RealFamily(
        "Phi3Config", "microsoft-Phi-3.5-mini-instruct.jinja", None, "<|endoftext|>",
        ("<|system|>", "<|user|>", "<|assistant|>", "<|end|>"), stop=("<|end|>", "<|assistant|>"),
        config={
            "pad_token_id": 0, "sliding_window": 262144, "max_position_embeddings": 131072,
            "original_max_position_embeddings": 4096, "tie_word_embeddings": False,
            # longrope as Phi-3.5 publishes it (a factor per rotary frequency), at the toy head size
            "rope_scaling": {"type": "longrope", "short_factor": [1.0, 1.02, 1.05, 1.1, 1.2, 1.4, 1.8, 2.5],
                             "long_factor": [1.1, 1.3, 1.9, 3.0, 6.0, 12.0, 24.0, 40.0]},
        },
    ),
    "phi-4": RealFamily(
        "Phi3Config", "microsoft-phi-4.jinja", None, "<|im_end|>", ("<|im_start|>", "<|im_sep|>", "<|im_end|>"),
        stop=("<|endoftext|>",), config={"pad_token_id": 0, "rope_theta": 250000.0, "tie_word_embeddings": False},
    ),
    "smollm2": RealFamily(
        "LlamaConfig", "HuggingFaceTB-SmolLM2-135M-Instruct.jinja", None, "<|im_end|>", CHATML_TOKENS,
        config={"rope_theta": 100000.0, "tie_word_embeddings": True},
    ),
    "smollm3": RealFamily(
        "SmolLM3Config", "HuggingFaceTB-SmolLM3-3B.jinja", None, "<|im_end|>", CHATML_TOKENS, added=THINK_TOKENS,
        config={"num_hidden_layers": 4, "no_rope_layer_interval": 4, "rope_theta": 5000000.0, "tie_word_embeddings": True,  # noqa: E501
                "pad_token_id": 2},
    ),
    "deepseek-r1-distill-qwen": RealFamily(
        "Qwen2Config", "deepseek-ai-DeepSeek-R1-Distill-Qwen-32B.jinja", "<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>",  # noqa: E501
        ("<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>", "<｜User｜>", "<｜Assistant｜>"), added=THINK_TOKENS[:2],
        config={"rope_theta": 1000000.0, "tie_word_embeddings": False, "use_sliding_window": False},
    ),
}  # fmt: skip


def build_real(family_name: str, tokenizer_source: Path, target: Path, seed: int = 0) -> Path:
    """A random-weight model of `REAL_FAMILIES[family_name]`, saved as an HF directory."""
    import torch
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer

    family = REAL_FAMILIES[family_name]
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_source)
    tokenizer.add_special_tokens({"additional_special_tokens": list(family.special)})
    tokenizer.add_tokens(list(family.added))
    tokenizer.bos_token = family.bos
    tokenizer.eos_token = family.eos
    tokenizer.pad_token = family.eos
    tokenizer.chat_template = family.template
    ids = lambda *tokens: [tokenizer.convert_tokens_to_ids(t) for t in tokens]  # noqa: E731
    config = getattr(transformers, family.config_class)(
        **{**SIZE, **family.config},
        vocab_size=len(tokenizer),
        bos_token_id=ids(family.bos)[0] if family.bos else None,
        eos_token_id=ids(family.eos)[0],
    )
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config)
    with torch.no_grad():  # norms and biases at random values: zeros and ones would hide a mistake
        for name, parameter in model.named_parameters():
            if parameter.ndim == 1:
                parameter.normal_(0.0, 0.1 if "bias" in name else 0.3).add_(0.0 if "bias" in name else 1.0)
    model.generation_config.eos_token_id = ids(family.eos, *family.stop)
    shutil.rmtree(target, ignore_errors=True)
    model.save_pretrained(target)
    tokenizer.save_pretrained(target)
    if family.bos_added:
        _prepend_bos(target / "tokenizer.json", family.bos, ids(family.bos)[0])
    return target
