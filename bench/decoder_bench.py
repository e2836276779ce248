"""The serving decoder alone (no HTTP) against transformers `generate`, in one run, on CPU or GPU.

    .venv/bin/python bench/decoder_bench.py [--tokens 64] [--model DIR | --random]

Greedy decoding of the same prompts by `generate` (1 prompt, and a left-padded batch of 8) and by
openft's decoder with its scheduler's arithmetic (continuous-batching KV slots, int4 on CPU
where exact, bf16 on GPU): 1 row, 8 rows of one LoRA adapter, 8 rows of 8 different adapters.
First checks that the decoder's logits match transformers' on this device. `--random` builds a
randomly initialised model of SmolLM2-135M's shape (for a machine without the model store: the
speed does not depend on the weights' values).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM, LlamaConfig

from openft.hardware import cpu_has_native_bf16
from openft.inference.decoder import LlamaDecoder

SMOLLM2_135M = dict(hidden_size=576, intermediate_size=1536, num_hidden_layers=30, num_attention_heads=9,
                    num_key_value_heads=3, head_dim=64, max_position_embeddings=8192, rms_norm_eps=1e-5,
                    vocab_size=49152, tie_word_embeddings=True, rope_parameters={"rope_type": "default", "rope_theta": 100000.0})  # fmt: skip
PROMPT_LENGTH = 40


def load(args, device) -> AutoModelForCausalLM:
    if args.random:
        torch.manual_seed(0)
        return AutoModelForCausalLM.from_config(LlamaConfig(**SMOLLM2_135M)).to(device).eval()
    return AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.float32).to(device).eval()


def adapters(model, directory: Path, count: int) -> list[str]:
    paths = []
    for n in range(count):
        torch.manual_seed(n)
        peft_model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, target_modules="all-linear", task_type="CAUSAL_LM"))
        with torch.no_grad():
            for name, parameter in peft_model.named_parameters():
                if "lora_B" in name:
                    parameter.normal_(0, 0.02)
        peft_model.save_pretrained(directory / f"a{n}")
        model = peft_model.unload()
        paths.append(str(directory / f"a{n}"))
    return paths


def synchronize(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


@torch.inference_mode()
def generate_rate(model, prompts: torch.Tensor, tokens: int, device) -> float:
    mask = torch.ones_like(prompts)
    model.generate(input_ids=prompts, attention_mask=mask, max_new_tokens=2, do_sample=False)
    synchronize(device)
    started = time.perf_counter()
    model.generate(input_ids=prompts, attention_mask=mask, max_new_tokens=tokens, min_new_tokens=tokens, do_sample=False)
    synchronize(device)
    return prompts.shape[0] * tokens / (time.perf_counter() - started)


@torch.inference_mode()
def decoder_rate(decoder: LlamaDecoder, prompts: torch.Tensor, slots: list[int], tokens: int, device) -> float:
    rows = list(range(len(slots)))
    decoder.prefill(rows, prompts.tolist(), slots)
    next_tokens = [7] * len(rows)
    decoder.decode(next_tokens, slots)  # warm-up
    synchronize(device)
    started = time.perf_counter()
    decoder.prefill(rows, prompts.tolist(), slots)
    for _ in range(tokens):
        next_tokens = decoder.decode(next_tokens, slots).argmax(-1).tolist()
    synchronize(device)
    return len(rows) * tokens / (time.perf_counter() - started)


@torch.inference_mode()
def check(model, decoder: LlamaDecoder, device) -> float:
    """The largest difference between the decoder's and transformers' last-position logits,
    relative to the logits' spread."""
    ids = torch.randint(100, 10000, (1, PROMPT_LENGTH), device=device)
    expected = model(ids).logits[0, -1].float()
    got = decoder.prefill([0], ids.tolist(), [0])[0]
    return float((got - expected).abs().max() / expected.std())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--model", type=Path, default=Path(".openft/models/SmolLM2-135M-Instruct"))
    parser.add_argument("--random", action="store_true")
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.type == "cpu":
        torch.set_num_threads(2)
    dtype = torch.bfloat16 if device.type == "cuda" or cpu_has_native_bf16() else torch.float32
    model = load(args, device)
    with tempfile.TemporaryDirectory() as tmp:
        paths = adapters(model, Path(tmp), 8)
        decoder = LlamaDecoder(model, "auto", dtype, device, adapter_capacity=8)
        slots = [decoder.adapters.slot(path, set()) for path in paths]
    torch.manual_seed(1)
    prompts = torch.randint(100, 10000, (8, PROMPT_LENGTH), device=device)
    print(f"device {device} ({torch.cuda.get_device_name() if device.type == 'cuda' else 'CPU'}), decoder in {dtype}")
    print(f"decoder vs transformers, max |logit difference| / logit std: {check(model, decoder, device):.3f}")
    peer_model = model.to(torch.bfloat16) if device.type == "cuda" else model  # generate in the device's usual dtype
    figures = {
        "generate, 1 prompt": generate_rate(peer_model, prompts[:1], args.tokens, device),
        "generate, batch of 8": generate_rate(peer_model, prompts, args.tokens, device),
        "decoder, 1 row": decoder_rate(decoder, prompts[:1], [0], args.tokens, device),
        "decoder, 8 rows, 1 adapter": decoder_rate(decoder, prompts, [slots[0]] * 8, args.tokens, device),
        "decoder, 8 rows, 8 adapters": decoder_rate(decoder, prompts, slots, args.tokens, device),
    }
    for label, rate in figures.items():
        print(f"{label:30} {rate:8.1f} tokens/s")
    print(f"1 row / generate 1 prompt:          {figures['decoder, 1 row'] / figures['generate, 1 prompt']:.2f}x")
    print(f"8 rows / generate batch of 8:       {figures['decoder, 8 rows, 1 adapter'] / figures['generate, batch of 8']:.2f}x")
    slower = 1 - figures["decoder, 8 rows, 8 adapters"] / figures["decoder, 8 rows, 1 adapter"]
    print(f"8 adapters vs 1 adapter:            {slower:+.0%} slower")


if __name__ == "__main__":
    main()
