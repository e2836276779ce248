"""The memory plan (`trainer/plan.py`): for a base's shape and a device, the first of bf16 LoRA,
LoRA with gradient checkpointing and QLoRA that fits, with its estimate; and the estimate's
activation term against what a training step of this trainer really keeps for the backward pass."""

import json

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


def test_a_plan_says_why_it_checkpoints_and_the_head_counts_only_trained_positions():
    smollm2_135m = ModelShape(30, 576, 1536, 9, 3, 64, 49152, 134_515_008)
    every = plan(smollm2_135m, cpu(12), rows=8, tokens=1024)
    assert every.gradient_checkpointing
    assert "bf16 LoRA on cpu would need ~14.1 GiB for batches of 8 x 1,024 tokens" in every.describe()
    # the same batch with a quarter of its positions trained (the prompts not): no checkpointing
    replies = plan(smollm2_135m, cpu(12), rows=8, tokens=1024, head_positions=8 * 256)
    assert not replies.gradient_checkpointing and replies.reason is None
    assert replies.parts["head"] * 4 == every.parts["head"]


# (layers, hidden, intermediate, heads, kv heads) of three sizes: 14M, 42M and 76M parameters
# with SmolLM2's 49,152-token vocabulary (tied embeddings, as SmolLM2's)
PEAK_SHAPES = [(2, 256, 704, 4, 2), (4, 576, 1536, 9, 3), (6, 768, 2048, 12, 4)]


def _peak_of_one_step(shape: ModelShape, dtype: str, rows: int, tokens: int, trained: int, results) -> None:
    """In a fresh child: the resident memory that building the model and one training step
    (forward, backward, AdamW) add at their peak, in bytes, after a tiny step has set up the
    libraries' kernels and allocators (as a trainer's process has by its first real step)."""
    import torch

    torch.set_num_threads(1)
    tiny = ModelShape(layers=1, hidden=64, intermediate=128, heads=4, kv_heads=2, head_dim=16, vocab=512, parameters=0)
    _one_step(tiny, dtype, 1, 16, 8)
    open("/proc/self/clear_refs", "w").write("5")  # the peak (VmHWM) starts again from here
    before = _resident("VmRSS")
    _one_step(shape, dtype, rows, tokens, trained)
    results.put(_resident("VmHWM") - before)


def _resident(field: str) -> int:
    status = open("/proc/self/status").read()
    return int(status.split(f"{field}:")[1].split()[0]) * 1024


def _one_step(shape: ModelShape, dtype: str, rows: int, tokens: int, trained: int) -> None:
    import torch
    from peft import get_peft_model
    from transformers import AutoModelForCausalLM, LlamaConfig

    from openft.trainer.sft import batch_loss, use_attention_for
    from openft.trainer.spec import lora_config

    config = LlamaConfig(
        hidden_size=shape.hidden,
        intermediate_size=shape.intermediate,
        num_attention_heads=shape.heads,
        num_key_value_heads=shape.kv_heads,
        num_hidden_layers=shape.layers,
        vocab_size=shape.vocab,
        tie_word_embeddings=True,
    )
    model = get_peft_model(AutoModelForCausalLM.from_config(config, dtype=getattr(torch, dtype)), lora_config(Lora()))
    model.config.use_cache = False
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad])
    input_ids = torch.randint(0, shape.vocab, (rows, tokens))
    labels = input_ids.clone()
    labels[:, : tokens - trained // rows] = -100  # the prompt: only the reply's positions in the head
    use_attention_for(model, input_ids.shape, torch.device("cpu"))
    loss, _, _ = batch_loss(model, input_ids, torch.ones_like(input_ids), labels)
    loss.backward()
    optimizer.step()


@pytest.mark.skipif(not __import__("sys").platform.startswith("linux"), reason="reads /proc/self")
def test_the_estimate_is_within_a_quarter_of_the_measured_peak_on_three_sizes_and_two_lengths():
    """The plan's estimate (less the process's own overhead) against the peak resident memory
    that building the model and one training step add, each case in a child forked from a server
    that has imported torch but never run it (a fork of a process whose OpenMP threads ran hangs)."""
    import multiprocessing

    from openft.hardware import compute_dtype
    from openft.trainer.plan import OVERHEAD, estimate

    dtype = compute_dtype("cpu")
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["torch", "transformers", "peft", "openft.trainer.sft"])
    results = context.Queue()
    misses = []
    for layers, hidden, intermediate, heads, kv_heads in PEAK_SHAPES:
        vocab = 49152
        parameters = (
            vocab * hidden
            + layers * (4 * hidden * hidden * (heads + kv_heads) // heads // 2 + 3 * hidden * intermediate + 2 * hidden)
            + hidden
        )
        shape = ModelShape(layers, hidden, intermediate, heads, kv_heads, hidden // heads, vocab, parameters)
        for rows, tokens in ((4, 128), (2, 512)):
            trained = rows * tokens // 2
            child = context.Process(target=_peak_of_one_step, args=(shape, dtype, rows, tokens, trained, results))
            child.start()
            measured = results.get(timeout=120)
            child.join()
            device = Device("cpu", "a CPU", 64 * GiB, dtype, qlora=False)
            planned = estimate(shape, device, rows, tokens, Lora(), "lora", False, trained).estimate - OVERHEAD["cpu"]
            if not 0.75 <= planned / measured <= 1.25:
                misses.append(
                    f"{hidden}x{layers} {rows}x{tokens}: planned {planned / 2**20:.0f} MiB, "
                    f"measured {measured / 2**20:.0f} MiB"
                )
    assert not misses, misses


def test_a_file_is_counted_with_the_tokenizer_once_and_read_back_as_the_trainer_renders_it(tmp_path, model_store):
    from transformers import AutoTokenizer

    from openft.data.labels import render_examples
    from openft.data.tokenized import read_examples, tokenize_file
    from openft.settings import BUNDLED_MODEL
    from tests.trainer_data import QUESTIONS, write_jsonl

    base = model_store / BUNDLED_MODEL
    tokenizer = AutoTokenizer.from_pretrained(base)
    data = write_jsonl(tmp_path / "train.jsonl", QUESTIONS)
    counted = tokenize_file(data, base, lambda: tokenizer, 512, tmp_path / "cache")
    assert tokenize_file(data, base, lambda: 1 / 0, 512, tmp_path / "cache") == counted  # cached: no tokenizer
    rendered = render_examples(tokenizer, [json.loads(line) for line in data.read_text().splitlines()], 512)
    assert read_examples(counted.path) == (rendered, [])
    assert counted.lengths == tuple(len(ex.input_ids) for ex in rendered)
    assert counted.largest_batch(4) == (4, max(counted.lengths), 4 * max(counted.trained))  # "Ahoy!" + end of turn
    assert tokenize_file(data, base, lambda: tokenizer, 8, tmp_path / "cache") != counted  # another context
