"""The serving decoder (inference/decoder.py) computes what transformers and peft compute, int4
weights predict as fp32 transformers does, and bases of another architecture are served by the
transformers engine behind the same interface. (Live serving: tests/test_serving.py.)"""

import pytest
import torch
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM, AutoTokenizer

from openft.inference.decoder import LlamaDecoder
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


@torch.inference_mode()
def test_decoder_computes_what_transformers_and_peft_compute(base, model_store, tmp_path):
    model, tokenizer = base
    ids = tokenizer("The quick brown fox jumps over the lazy dog because it wants to", return_tensors="pt").input_ids
    adapters = [random_adapter(model_store / BUNDLED_MODEL, tmp_path / f"a{n}", n) for n in (1, 2)]  # ranks 8 and 12
    expected = [model(ids).logits[0], *(adapter(ids).logits[0] for adapter in adapters)]

    decoder = LlamaDecoder(model, "none", torch.float32, CPU, adapter_capacity=2)
    slots = [0, decoder.adapters.slot(str(tmp_path / "a1"), set()), decoder.adapters.slot(str(tmp_path / "a2"), set())]
    prompt, rest = ids[0, :6].tolist(), ids[0, 6:].tolist()
    # Rows of the base and of two adapters, prefilled together and decoded in the same steps.
    logits = decoder.prefill([0, 1, 2], [prompt] * 3, slots)
    for row in range(3):
        torch.testing.assert_close(logits[row], expected[row][5], atol=2e-3, rtol=0)
    for position, token in enumerate(rest, start=6):
        logits = decoder.decode([token] * 3, slots)
        for row in range(3):
            torch.testing.assert_close(logits[row], expected[row][position], atol=2e-3, rtol=0)


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


def test_other_architectures_are_served_by_transformers(tmp_path, model_store):
    """A base the decoder cannot run (here a small random Qwen2) is decoded by the transformers +
    peft engine behind the same interface."""
    from transformers import Qwen2Config

    from openft.inference.batched import BatchedEngine
    from openft.inference.engine import ModelRef, Prompt, SamplingParams
    from openft.settings import Settings
    from openft.storage import Storage

    bundled = model_store / BUNDLED_MODEL
    target = tmp_path / "models" / "tiny-qwen2"
    config = Qwen2Config(
        vocab_size=49152,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        eos_token_id=2,
        bos_token_id=1,
    )
    AutoModelForCausalLM.from_config(config).save_pretrained(target)
    for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja"):
        (target / name).write_bytes((bundled / name).read_bytes())
    engine = BatchedEngine(
        tmp_path / "models", 2, Storage.for_settings(Settings(data_dir=tmp_path)), tmp_path / "cache"
    )
    chunks = list(
        engine.generate(
            ModelRef("tiny-qwen2"),
            Prompt([{"role": "user", "content": "Hi"}]),
            SamplingParams(max_tokens=5, temperature=0, logit_bias=((2, -100.0),)),
        )
    )
    assert chunks[-1].finish_reason == "length" and chunks[-1].completion_tokens == 5
