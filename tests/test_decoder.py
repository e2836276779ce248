"""The serving decoder (inference/decoder.py) computes what transformers and peft compute, for
each family it serves (Llama, Mistral, Qwen2, Qwen3, and their variants: biases, sliding windows,
Llama 3's RoPE scaling); int4 weights predict as fp32 transformers does; and bases of another
architecture are served by the transformers engine behind the same interface. (Live serving:
tests/test_serving.py.)"""

import copy

import pytest
import torch
from peft import LoraConfig, get_peft_model
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

from openft.inference.decoder import LlamaDecoder, unsupported_reason
from openft.inference.weights import Int4Linear
from openft.settings import BUNDLED_MODEL

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def base(model_store):
    path = model_store / BUNDLED_MODEL
    return AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval(), AutoTokenizer.from_pretrained(path)


def random_adapter(path, directory, seed: int):
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    model = get_peft_model(
        model, LoraConfig(r=4 + 4 * seed, lora_alpha=16, target_modules="all-linear", task_type="CAUSAL_LM")
    )
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "lora_B" in name:
                parameter.normal_(0, 0.02)
    model.save_pretrained(directory)
    return model.eval()


def assert_decodes_as(model, adapters: list, adapter_dirs: list, ids: torch.Tensor) -> None:
    """The decoder's logits for rows of the base and of each adapter, prefilled together (the
    first 6 tokens) and decoded in the same steps (the rest, teacher-forced), are transformers'
    (peft's for the adapters), fp32, to 2e-3."""
    expected = [model(ids).logits[0], *(adapter(ids).logits[0] for adapter in adapters)]
    decoder = LlamaDecoder(model, "none", torch.float32, CPU, adapter_capacity=len(adapters))
    slots = [0, *(decoder.adapters.slot(str(directory), set()) for directory in adapter_dirs)]
    rows = range(len(slots))
    prompt, rest = ids[0, :6].tolist(), ids[0, 6:].tolist()
    logits = decoder.prefill(list(rows), [prompt] * len(slots), slots)
    for row in rows:
        torch.testing.assert_close(logits[row], expected[row][5], atol=2e-3, rtol=0)
    for position, token in enumerate(rest, start=6):
        logits = decoder.decode([token] * len(slots), slots)
        for row in rows:
            torch.testing.assert_close(logits[row], expected[row][position], atol=2e-3, rtol=0)


@torch.inference_mode()
def test_decoder_computes_what_transformers_and_peft_compute(base, model_store, tmp_path):
    model, tokenizer = base
    ids = tokenizer("The quick brown fox jumps over the lazy dog because it wants to", return_tensors="pt").input_ids
    adapters = [random_adapter(model_store / BUNDLED_MODEL, tmp_path / f"a{n}", n) for n in (1, 2)]  # ranks 8 and 12
    assert_decodes_as(model, adapters, [tmp_path / "a1", tmp_path / "a2"], ids)


LLAMA3_ROPE = {
    "rope_type": "llama3",
    "rope_theta": 500000.0,
    "factor": 8.0,
    "low_freq_factor": 1.0,
    "high_freq_factor": 4.0,
    "original_max_position_embeddings": 1024,
}
# Each family's tiny model (tests/tiny_models.py), and variants with what real checkpoints of the
# family use: windows of 4 positions (the test's 16 tokens slide past them), biases, RoPE scaling.
FAMILY_VARIANTS = {
    "llama": ("llama", {}),
    "llama-biases-llama3-rope": ("llama", {"attention_bias": True, "mlp_bias": True, "rope_parameters": LLAMA3_ROPE}),
    "mistral": ("mistral", {}),
    "mistral-sliding-window": ("mistral", {"sliding_window": 4}),
    "qwen2": ("qwen2", {}),
    "qwen2-sliding-layers": ("qwen2", {"use_sliding_window": True, "sliding_window": 4, "max_window_layers": 1}),
    "qwen3": ("qwen3", {}),
}


@pytest.mark.parametrize("variant", FAMILY_VARIANTS)
@torch.inference_mode()
def test_each_family_decodes_as_transformers_with_mixed_adapters(variant, tiny_models, tmp_path):
    """Random weights, biases and norms included (initialised to zeros and ones, they would
    hide a bias or a q/k norm applied wrongly), and two peft all-linear adapters of different
    ranks in one batch with a base row."""
    family, overrides = FAMILY_VARIANTS[variant]
    stored = AutoConfig.from_pretrained(tiny_models[family])
    settings = {key: value for key, value in stored.to_dict().items() if key != "layer_types"}  # derived anew
    config = type(stored).from_dict({**settings, **overrides})
    assert unsupported_reason(config) is None
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config).eval()
    for name, parameter in model.named_parameters():
        if "norm" in name:
            parameter.normal_(1, 0.1)
        elif "bias" in name:
            parameter.normal_(0, 0.1)
    adapters = []
    for n, rank in enumerate((4, 8)):
        torch.manual_seed(n + 1)
        adapter = get_peft_model(
            copy.deepcopy(model), LoraConfig(r=rank, lora_alpha=16, target_modules="all-linear", task_type="CAUSAL_LM")
        )
        for name, parameter in adapter.named_parameters():
            if "lora_B" in name:
                parameter.normal_(0, 0.05)
        adapter.save_pretrained(tmp_path / f"a{n}")
        adapters.append(adapter.eval())
    ids = torch.randint(100, 5000, (1, 16), generator=torch.Generator().manual_seed(0))
    assert_decodes_as(model, adapters, [tmp_path / "a0", tmp_path / "a1"], ids)


def test_families_the_decoder_does_not_serve_are_named(tiny_models):
    assert unsupported_reason(AutoConfig.from_pretrained(tiny_models["gemma"])) == "its architecture, activation"
    assert unsupported_reason(AutoConfig.from_pretrained(tiny_models["phi3"])) == "its architecture"
    dynamic = AutoConfig.from_pretrained(tiny_models["llama"])
    dynamic.rope_parameters = {"rope_type": "dynamic", "rope_theta": 10000.0, "factor": 2.0}
    assert unsupported_reason(dynamic) == "its rope scaling"


@torch.inference_mode()
def test_int4_serving_of_the_bundled_model_predicts_as_transformers(base):
    """The bundled model came from a Q4_1 GGUF: every layer packs to int4 exactly (the head
    does not and stays dense), and teacher-forced next-token predictions agree with fp32
    transformers."""
    model, tokenizer = base
    decoder = LlamaDecoder(model, "auto", torch.bfloat16, CPU, adapter_capacity=1)
    linears = [weights for layer in decoder.layers for weights in (layer.qkv, layer.o, layer.gate_up, layer.down)]
    assert all(isinstance(weights, Int4Linear) for weights in linears) and not isinstance(decoder.head, Int4Linear)

    text = tokenizer.apply_chat_template(
        [
            {"role": "user", "content": "Name three colours of the rainbow."},
            {"role": "assistant", "content": "Red, orange and yellow are three of them."},
        ],
        tokenize=False,
    )
    ids = tokenizer(text).input_ids
    expected = model(torch.tensor([ids])).logits[0].argmax(-1).tolist()
    predicted = [int(decoder.prefill([0], [ids[:1]], [0])[0].argmax())]
    predicted += [int(decoder.decode([token], [0])[0].argmax()) for token in ids[1:]]
    agreement = sum(p == e for p, e in zip(predicted, expected)) / len(ids)
    assert agreement >= 0.95, agreement


@pytest.mark.parametrize("transformers_only", [False, True])
def test_each_base_is_run_by_the_decoder_if_it_can_else_by_transformers(tiny_models, transformers_only):
    """Chosen per base: the Llama family by openft's decoder, Gemma and Phi-3 by transformers;
    with OPENFT_ENGINE=hf (`transformers_only`) every base by transformers."""
    from openft.inference.hf import TransformersModel
    from openft.inference.local import LoadedBase

    for family, path in tiny_models.items():
        model = LoadedBase(path, transformers_only).load_model("auto")
        decoded = family in ("llama", "mistral", "qwen2", "qwen3") and not transformers_only
        assert isinstance(model, LlamaDecoder if decoded else TransformersModel), family
