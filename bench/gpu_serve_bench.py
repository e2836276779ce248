"""Decode speed of openft's engine on a GPU, next to transformers `generate` in the same run, on a
random-weight model shaped like Qwen2.5-1.5B.

    python bench/gpu_serve_bench.py [--tokens 256]      # on a GPU machine, a few minutes
    python bench/gpu_serve_bench.py --tiny               # a 2-layer model on CPU: checks the script runs

The model (bf16 random weights: decode speed does not depend on their values) and a word-level
tokenizer over its whole 151,936-token vocabulary with ChatML's template are made here and saved
as the one base of a temporary model store: nothing is downloaded. Then, greedy, with the end of
turn banned so that every reply runs to `--tokens`:

- transformers `generate` (bf16, SDPA, KV cache): 1 prompt, then a left-padded batch of 16;
- openft's engine (`BatchedEngine`: the scheduler, sampling, streaming, the decoder in bf16):
  1 stream, then 16 concurrent streams, each from submission to its last token.

It prints tokens/s (all streams' tokens over the wall time, prefill included), the engine's
ratio to `generate` at 1 and 16, time to first token and the GPU's peak memory.

On the lent GPU machines python3 has torch, transformers 5.17, peft and fsspec, but not what the
rest of openft imports (pydantic-settings, pinned transformers). Carry them as wheels
(/work/.library/device/README.md shows how): transformers==5.24.0 pydantic==2.14.4
pydantic-core (the version pydantic 2.14.4 names) pydantic-settings==2.16.3 annotated-types
typing-inspection python-dotenv; then `PYTHONPATH=/tmp/site:src python3 bench/gpu_serve_bench.py`.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
from pathlib import Path

import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast, Qwen2Config

from openft.inference.batched import BatchedEngine
from openft.inference.engine import ModelRef, Prompt, SamplingParams
from openft.storage import Storage

QWEN25_1_5B = dict(
    hidden_size=1536,
    intermediate_size=8960,
    num_hidden_layers=28,
    num_attention_heads=12,
    num_key_value_heads=2,
    max_position_embeddings=32768,
    rms_norm_eps=1e-6,
    rope_parameters={"rope_type": "default", "rope_theta": 1000000.0},
    vocab_size=151936,
    tie_word_embeddings=True,
)
TINY = dict(
    QWEN25_1_5B, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, vocab_size=4096
)
CHATML = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
STREAMS = 16
PROMPT_WORDS = 64


def save_base(target: Path, shape: dict, device: torch.device) -> list[str]:
    """The random model and its tokenizer as an HF folder; returns 16 prompts in its words."""
    vocab = {"<|im_start|>": 0, "<|im_end|>": 1, **{f"w{i}": i for i in range(2, shape["vocab_size"])}}
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=_word_level(vocab), eos_token="<|im_end|>", pad_token="<|im_end|>"
    )
    tokenizer.add_special_tokens({"additional_special_tokens": ["<|im_start|>", "<|im_end|>"]})
    tokenizer.chat_template = CHATML
    tokenizer.save_pretrained(target)
    config = Qwen2Config(**shape, bos_token_id=0, eos_token_id=1)
    torch.manual_seed(0)
    with device:  # random initialisation is far faster on the GPU
        model = AutoModelForCausalLM.from_config(config, dtype=_dtype(device))
    model.save_pretrained(target)
    del model
    words = torch.randint(2, shape["vocab_size"], (STREAMS, PROMPT_WORDS), generator=torch.Generator().manual_seed(1))
    return [" ".join(f"w{i}" for i in row.tolist()) for row in words]


def _word_level(vocab: dict[str, int]) -> Tokenizer:
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="w2"))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return tokenizer


def _dtype(device: torch.device) -> torch.dtype:
    return torch.bfloat16 if device.type == "cuda" else torch.float32


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


@torch.inference_mode()
def generate_rate(path: Path, prompts: list[str], tokens: int, device: torch.device) -> float:
    tokenizer = PreTrainedTokenizerFast.from_pretrained(path, padding_side="left")
    model = AutoModelForCausalLM.from_pretrained(path, dtype=_dtype(device)).to(device).eval()
    chats = [[{"role": "user", "content": p}] for p in prompts]
    inputs = tokenizer.apply_chat_template(
        chats, add_generation_prompt=True, return_tensors="pt", return_dict=True, padding=True
    ).to(device)
    model.generate(**inputs, max_new_tokens=2, do_sample=False)  # warm-up
    _sync(device)
    started = time.perf_counter()
    model.generate(**inputs, max_new_tokens=tokens, min_new_tokens=tokens, do_sample=False)
    _sync(device)
    return len(prompts) * tokens / (time.perf_counter() - started)


def engine_rate(engine: BatchedEngine, prompts: list[str], tokens: int) -> tuple[float, float]:
    """All streams' tokens per second, and the median time to first token."""
    params = SamplingParams(max_tokens=tokens, temperature=0, logit_bias=((1, -100.0),))  # <|im_end|> banned
    counts, firsts = [], []

    def stream(prompt: str) -> None:
        sent = time.perf_counter()
        for n, chunk in enumerate(
            engine.generate(ModelRef("base"), Prompt([{"role": "user", "content": prompt}]), params)
        ):
            if n == 0:
                firsts.append(time.perf_counter() - sent)
            last = chunk
        counts.append(last.completion_tokens)

    threads = [threading.Thread(target=stream, args=(prompt,)) for prompt in prompts]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(counts) == len(prompts) * tokens, counts
    return sum(counts) / (time.perf_counter() - started), statistics.median(firsts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tokens", type=int, default=256)
    parser.add_argument("--tiny", action="store_true", help="a 2-layer model on CPU, to check the script runs")
    args = parser.parse_args()
    device = torch.device("cpu" if args.tiny else "cuda")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        prompts = save_base(root / "models" / "base", TINY if args.tiny else QWEN25_1_5B, device)
        path = root / "models" / "base"
        figures = {
            "generate, 1 prompt": generate_rate(path, prompts[:1], args.tokens, device),
            f"generate, batch of {STREAMS}": generate_rate(path, prompts, args.tokens, device),
        }
        if device.type == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
        engine = BatchedEngine(root / "models", 4, Storage(str(root)), root / "cache")
        engine_rate(engine, prompts[:2], 2)  # load the model, warm up
        figures["engine, 1 stream"], first_one = engine_rate(engine, prompts[:1], args.tokens)
        figures[f"engine, {STREAMS} streams"], first_many = engine_rate(engine, prompts, args.tokens)
    name = torch.cuda.get_device_name() if device.type == "cuda" else "CPU"
    print(
        f"device {device} ({name}); {'tiny' if args.tiny else 'Qwen2.5-1.5B'}-shaped random model; {args.tokens} tokens"
    )
    for label, rate in figures.items():
        print(f"{label:28} {rate:9.1f} tokens/s")
    print(f"engine / generate, 1 stream:  {figures['engine, 1 stream'] / figures['generate, 1 prompt']:.2f}x")
    many = figures[f"engine, {STREAMS} streams"] / figures[f"generate, batch of {STREAMS}"]
    print(f"engine / generate, {STREAMS} streams: {many:.2f}x")
    first = f"{first_one * 1000:.0f} ms (1 stream), {first_many * 1000:.0f} ms (median of {STREAMS})"
    print(f"engine time to first token: {first}")
    if device.type == "cuda":
        print(f"engine peak GPU memory: {torch.cuda.max_memory_allocated() / 2**30:.2f} GiB")


if __name__ == "__main__":
    main()
