"""The serving engine in process (no HTTP) against transformers `generate`, in one run, on CPU or GPU.

    .venv/bin/python bench/engine_bench.py [--tokens 64] [--model DIR | --random --tokenizer DIR]

First checks that the decoder's logits match transformers' and peft's on this device (a base row
and an adapter row prefilled together). Then greedy decoding of 8 prompts, every reply run to
`--tokens` (end of turn banned): transformers `generate` for 1 prompt and a left-padded batch of
8, then openft's engine (scheduler, sampling, streaming; int4 on CPU where exact, bf16 on GPU):
1 stream, 8 concurrent streams of one LoRA adapter, 8 streams of 8 different adapters.
`--random` builds a randomly initialised model of SmolLM2-135M's shape, for a machine without the
model store (speed does not depend on the weights' values; int4 does: random weights stay dense).
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import threading
import time
from pathlib import Path

import torch
from peft import LoraConfig, PeftModel, get_peft_model
from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig

from openft.hardware import compute_dtype
from openft.inference.batched import BatchedEngine
from openft.inference.decoder import LlamaDecoder
from openft.inference.engine import ModelRef, Prompt, SamplingParams
from openft.settings import Settings
from openft.storage import Storage

SMOLLM2_135M = dict(
    hidden_size=576,
    intermediate_size=1536,
    num_hidden_layers=30,
    num_attention_heads=9,
    num_key_value_heads=3,
    head_dim=64,
    max_position_embeddings=8192,
    rms_norm_eps=1e-5,
    vocab_size=49152,
    tie_word_embeddings=True,
    bos_token_id=1,
    eos_token_id=2,
    rope_parameters={"rope_type": "default", "rope_theta": 100000.0},
)
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja")
PROMPTS = [
    f"Write a short story about a {animal} who learns to bake bread."
    for animal in ("dragon", "cat", "fox", "whale", "robot", "owl", "bear", "snail")
]


def model_dir(args, models: Path) -> Path:
    target = models / "base"
    models.mkdir(parents=True)
    if not args.random:
        target.symlink_to(args.model.resolve(), target_is_directory=True)
        return target
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(LlamaConfig(**SMOLLM2_135M)).save_pretrained(target)
    for name in TOKENIZER_FILES:
        shutil.copy(args.tokenizer / name, target / name)
    return target


def make_adapters(path: Path, storage: Storage, scratch: Path, count: int, std: float) -> list[str]:
    """Random LoRA adapters (r=8, all linear layers, B drawn with this std) on the model at
    `path`, saved under `scratch` and put in the storage; returns their storage keys."""
    keys = []
    for n in range(count):
        torch.manual_seed(n)
        model = get_peft_model(
            AutoModelForCausalLM.from_pretrained(path),
            LoraConfig(r=8, lora_alpha=16, target_modules="all-linear", task_type="CAUSAL_LM"),
        )
        with torch.no_grad():
            for name, parameter in model.named_parameters():
                if "lora_B" in name:
                    parameter.normal_(0, std)
        model.save_pretrained(scratch / f"a{n}")
        storage.put_dir(scratch / f"a{n}", f"adapters/a{n}")
        keys.append(f"adapters/a{n}")
    return keys


@torch.inference_mode()
def check(path: Path, adapter_dir: Path, device, dtype) -> tuple[float, float]:
    """The largest difference between the decoder's and transformers/peft's last-position logits,
    relative to the logits' spread: for a base row and an adapter row prefilled together."""
    model = AutoModelForCausalLM.from_pretrained(path).to(device).eval()
    decoder = LlamaDecoder(model, "auto", dtype, device, adapter_capacity=1)
    slot = decoder.adapters.slot(str(adapter_dir), set())
    ids = torch.randint(100, 10000, (1, 40), device=device)
    tuned = PeftModel.from_pretrained(model, adapter_dir)
    expected_adapter = tuned(ids).logits[0, -1].float()
    with tuned.disable_adapter():
        expected_base = tuned(ids).logits[0, -1].float()
    got = decoder.prefill([0, 1], ids.tolist() * 2, [0, slot])
    return tuple(float((g - e).abs().max() / e.std()) for g, e in ((got[0], expected_base), (got[1], expected_adapter)))


@torch.inference_mode()
def generate_rate(path: Path, prompts: list[str], tokens: int, device) -> float:
    tokenizer = AutoTokenizer.from_pretrained(path, padding_side="left")
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32  # each device's usual dtype
    model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype).to(device).eval()
    chats = [[{"role": "user", "content": p}] for p in prompts]
    inputs = tokenizer.apply_chat_template(
        chats, add_generation_prompt=True, return_tensors="pt", return_dict=True, padding=True
    ).to(device)
    model.generate(**inputs, max_new_tokens=2, do_sample=False)
    started = time.perf_counter()
    model.generate(**inputs, max_new_tokens=tokens, min_new_tokens=tokens, do_sample=False)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return len(prompts) * tokens / (time.perf_counter() - started)


def engine_rate(engine: BatchedEngine, models: list[ModelRef], tokens: int) -> float:
    params = SamplingParams(max_tokens=tokens, temperature=0, logit_bias=((2, -100.0),))  # <|im_end|> banned
    counts = []

    def stream(model: ModelRef, prompt: str) -> None:
        *_, last = engine.generate(model, Prompt([{"role": "user", "content": prompt}]), params)
        counts.append(last.completion_tokens)

    threads = [threading.Thread(target=stream, args=pair) for pair in zip(models, PROMPTS)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(counts) / (time.perf_counter() - started)


def on_own_thread(function, *args):
    result = []
    thread = threading.Thread(target=lambda: result.append(function(*args)))
    thread.start()
    thread.join()
    return result[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--model", type=Path, default=Path(".openft/models/SmolLM2-135M-Instruct"))
    parser.add_argument("--random", action="store_true")
    parser.add_argument("--tokenizer", type=Path, help="with --random: a folder holding the tokenizer files")
    parser.add_argument("--json", action="store_true", help="print one JSON record of the figures at the end")
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.set_num_threads(2)
    settings = Settings()  # OPENFT_COMPUTE_DTYPE and OPENFT_BATCH_INVARIANT, as the server reads them
    dtype = getattr(torch, compute_dtype(device.type, settings.compute_dtype))  # the engine's
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp)
        path = model_dir(args, data / "models")
        storage = Storage.for_settings(Settings(data_dir=data))
        adapters = on_own_thread(make_adapters, path, storage, data / "scratch", 8, 0.02)
        # The peer and the check each on a thread of its own that ends: torch work on a thread
        # that lives on (this one) halved the speed of another thread's torch work afterwards
        # (two OpenMP teams on 2 cores), in both directions.
        base_error, adapter_error = on_own_thread(check, path, data / "scratch" / "a0", device, dtype)
        figures = {
            "generate, 1 prompt": on_own_thread(generate_rate, path, PROMPTS[:1], args.tokens, device),
            "generate, batch of 8": on_own_thread(generate_rate, path, PROMPTS, args.tokens, device),
        }
        engine = BatchedEngine(
            data / "models",
            2,
            storage,
            data / "cache",
            compute_dtype=settings.compute_dtype,
            batch_invariant=settings.batch_invariant,
        )
        engine_rate(engine, [ModelRef("base", key) for key in adapters], 2)  # load the model and every adapter
        figures["engine, 1 stream"] = engine_rate(engine, [ModelRef("base")], args.tokens)
        figures["engine, 8 streams, 1 adapter"] = engine_rate(engine, [ModelRef("base", adapters[0])] * 8, args.tokens)
        figures["engine, 8 streams, 8 adapters"] = engine_rate(
            engine, [ModelRef("base", key) for key in adapters], args.tokens
        )
    name = torch.cuda.get_device_name() if device.type == "cuda" else "CPU"
    print(f"device {device} ({name}), decoder in {dtype}")
    print("decoder vs transformers (peft), max |logit difference| / logit std: ", end="")
    print(f"base {base_error:.3f}, adapter {adapter_error:.3f}")
    for label, rate in figures.items():
        print(f"{label:32} {rate:8.1f} tokens/s")
    print(f"1 stream / generate 1 prompt:       {figures['engine, 1 stream'] / figures['generate, 1 prompt']:.2f}x")
    batched = figures["engine, 8 streams, 1 adapter"] / figures["generate, batch of 8"]
    print(f"8 streams / generate batch of 8:    {batched:.2f}x")
    slower = 1 - figures["engine, 8 streams, 8 adapters"] / figures["engine, 8 streams, 1 adapter"]
    print(f"8 adapters vs 1 adapter:            {slower:+.0%} slower")
    if args.json:
        ratios = {
            "engine 1 stream / generate 1 prompt": figures["engine, 1 stream"] / figures["generate, 1 prompt"],
            "engine 8 streams / generate batch of 8": batched,
            "engine 8 adapters / 1 adapter": 1 - slower,
        }
        print(json.dumps({"figures": figures, "ratios": ratios, "decoder_dtype": str(dtype)}))


if __name__ == "__main__":
    main()
