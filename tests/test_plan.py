"""The memory plan (`trainer/plan.py`): for a base's shape and a device, the first of bf16 LoRA,
LoRA with gradient checkpointing and QLoRA that fits, with its estimate; and the estimate's
activation term against what a training step of this trainer really keeps for the backward pass."""

import pytest

from openft.trainer.plan import (
    HEAD_SAVED_BYTES,
    Device,
    GiB,
    ModelShape,
    example_token_bound,
    layer_activations,
    plan,
)
from openft.trainer.spec import Lora

# Published configs' shapes (parameters as their safetensors hold them).
QWEN25_1_5B = ModelShape(
    layers=28,
    hidden=1536,
    intermediate=8960,
    heads=12,
    kv_heads=2,
    head_dim=128,
    vocab=151936,
    parameters=1_543_714_304,
)
LLAMA3_8B = ModelShape(
    layers=32,
    hidden=4096,
    intermediate=14336,
    heads=32,
    kv_heads=8,
    head_dim=128,
    vocab=128256,
    parameters=8_030_261_248,
)
TINY = ModelShape(
    layers=2, hidden=64, intermediate=128, heads=4, kv_heads=2, head_dim=16, vocab=49160, parameters=3_200_000
)


def gpu(gib: float, qlora: bool = True) -> Device:
    return Device("cuda", "a GPU", int(gib * GiB), "bfloat16", qlora)


def cpu(gib: float, dtype: str = "bfloat16") -> Device:
    return Device("cpu", "a CPU", int(gib * GiB), dtype, qlora=False)


def test_an_8b_model_on_24_gib_trains_in_bf16_when_the_batch_is_small_and_in_qlora_when_not():
    small = plan(LLAMA3_8B, gpu(24), rows=1, tokens=1024)
    assert (small.method, small.dtype, small.gradient_checkpointing, small.fits) == ("lora", "bfloat16", True, True)
    assert 16 * GiB < small.estimate <= 0.9 * 24 * GiB  # the bf16 weights alone are 15 GiB

    large = plan(LLAMA3_8B, gpu(24), rows=2, tokens=2048)
    assert (large.method, large.fits) == ("qlora", True)
    assert large.parts["weights"] < 8 * GiB  # 4-bit linear layers, fp32 embeddings and head
    assert large.describe().startswith("QLoRA (4-bit NF4 base)")


def test_qlora_only_where_bitsandbytes_runs_and_as_the_job_asks():
    assert not plan(LLAMA3_8B, gpu(24, qlora=False), rows=2, tokens=2048).fits
    assert plan(LLAMA3_8B, gpu(80), rows=1, tokens=1024, qlora=True).method == "qlora"
    refused = plan(LLAMA3_8B, gpu(24), rows=2, tokens=2048, qlora=False)
    assert (refused.method, refused.fits) == ("lora", False)
    assert "more than the 21.6 GiB cuda worker" in refused.problem
    on_cpu = plan(TINY, cpu(16), rows=1, tokens=128, qlora=True)
    assert not on_cpu.fits and "QLoRA needs a CUDA device" in on_cpu.problem


def test_a_1_5b_model_on_80_gib_trains_in_bf16_lora_with_checkpointing_only_for_large_batches():
    p = plan(QWEN25_1_5B, gpu(80), rows=1, tokens=2048)
    assert (p.method, p.dtype, p.gradient_checkpointing) == ("lora", "bfloat16", False)
    assert p.parts["weights"] == QWEN25_1_5B.parameters * 2
    big = plan(QWEN25_1_5B, gpu(80), rows=16, tokens=2048)
    assert (big.method, big.gradient_checkpointing, big.fits) == ("lora", True, True)
    assert big.estimate < plan(QWEN25_1_5B, gpu(80), rows=16, tokens=2048, qlora=True).estimate


def test_a_tiny_model_on_the_cpu_trains_in_the_cpus_compute_dtype():
    for dtype, weight_bytes in (("bfloat16", 2), ("float32", 4)):
        p = plan(TINY, cpu(16, dtype), rows=1, tokens=256)
        assert (p.device, p.dtype, p.method, p.gradient_checkpointing, p.fits) == ("cpu", dtype, "lora", False, True)
        assert p.parts["weights"] == TINY.parameters * weight_bytes
        assert p.parts["adapters"] == TINY.lora_parameters(Lora()) * 16
    assert not plan(TINY, cpu(0.25), rows=1, tokens=256).fits  # the process alone needs more


def test_a_plan_round_trips_through_json_and_the_token_bound_caps_at_the_context():
    p = plan(TINY, cpu(16), rows=2, tokens=300)
    assert type(p).from_dict(p.to_dict()) == p
    assert example_token_bound(100, 2048) == 356
    assert example_token_bound(10**6, 2048) == 2048


def test_the_lora_parameters_count_every_adapted_projection():
    # r x (in + out) per projection: q 64+64, k and v 64+32, o 64+64, gate and up 64+128, down 128+64
    assert TINY.lora_parameters(Lora(r=8)) == 2 * 8 * (128 + 96 + 96 + 128 + 192 + 192 + 192)
    assert TINY.lora_parameters(Lora(r=8, target_modules=["q_proj", "v_proj"])) == 2 * 8 * (128 + 96)


@pytest.mark.parametrize("dtype", ["bfloat16", "float32"])
@pytest.mark.parametrize("rows,tokens", [(2, 160), (1, 600)])
def test_the_activation_estimate_holds_what_a_training_step_keeps(dtype, rows, tokens):
    """Saved-tensor hooks count the bytes one LoRA training step of the trainer keeps for the
    backward pass (`sft.batch_loss`, every position trained; eager attention for small batches,
    SDPA for large, as the trainer picks): the plan's count is within 10% of them."""
    import torch
    from peft import get_peft_model
    from transformers import AutoModelForCausalLM, LlamaConfig

    from openft.trainer.sft import batch_loss, use_attention_for
    from openft.trainer.spec import lora_config

    shape = ModelShape(
        layers=3, hidden=256, intermediate=704, heads=8, kv_heads=2, head_dim=32, vocab=3000, parameters=0
    )
    config = LlamaConfig(
        hidden_size=shape.hidden,
        intermediate_size=shape.intermediate,
        num_attention_heads=shape.heads,
        num_key_value_heads=shape.kv_heads,
        num_hidden_layers=shape.layers,
        vocab_size=shape.vocab,
    )
    torch.manual_seed(0)
    model = get_peft_model(AutoModelForCausalLM.from_config(config).to(getattr(torch, dtype)), lora_config(Lora()))
    model.config.use_cache = False
    model.train()
    input_ids = torch.randint(0, shape.vocab, (rows, tokens))
    use_attention_for(model, input_ids.shape, torch.device("cpu"))
    saved: dict[int, int] = {}

    def pack(tensor):
        storage = tensor.untyped_storage()
        saved[storage.data_ptr()] = max(saved.get(storage.data_ptr(), 0), storage.nbytes())
        return tensor

    weights = {p.untyped_storage().data_ptr() for p in model.parameters()}
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        batch_loss(model, input_ids, torch.ones_like(input_ids), input_ids.clone())
    kept = sum(n for pointer, n in saved.items() if pointer not in weights)

    counted = shape.layers * layer_activations(shape, dtype, "cpu", rows, tokens)
    counted += HEAD_SAVED_BYTES * rows * tokens * shape.vocab
    assert counted == pytest.approx(kept, rel=0.1)
