"""One stream of the bundled model with a LoRA fine-tune applied: llama.cpp against openft's engine,
same prompt, same threads, same run.

    .venv/bin/python bench/llamacpp_bench.py [--model DIR] [--threads 2] [--tokens 96] [--rounds 3]

Needs llama-cpp-python ('.[bench]', or scripts/install-llama-cpp.sh) and llama.cpp's converter
(`--llama-cpp`: the vendored llama.cpp of its sdist). A random LoRA adapter (r 8, all linear
layers, as engine_bench.py's) is merged into the base and converted to GGUF by llama.cpp's
convert_hf_to_gguf.py at q8_0 and f16 (its converter makes no 4-bit files; the GGUF that openft's
own writer made crashed llama.cpp 0.3.36 at its first token); llama.cpp decodes the merged file,
openft's engine the base (int4 where exact, on a bf16 CPU) with the adapter applied, as it serves
a fine-tune. Greedy, end of turn banned, decode tokens/s after the first token (prefill excluded),
each side in a process of its own (two thread teams in one process slow each other), alternating,
median of the rounds.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MESSAGES = [
    {"role": "system", "content": "You are a helpful assistant."},
    {"role": "user", "content": "What is the capital of Italy, and what is it famous for?"},
]
QUANTIZATIONS = ("q8_0", "f16")
LLAMA_CPP = Path.home() / ".cache/openft/llama-cpp-python-0.3.36/src/vendor/llama.cpp"


def prepare(model: Path, work: Path, llama_cpp: Path) -> None:
    """The adapter in work/adapter, and the merged model as work/merged-<quantization>.gguf."""
    import shutil

    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    tuned = get_peft_model(
        AutoModelForCausalLM.from_pretrained(model),
        LoraConfig(r=8, lora_alpha=16, target_modules="all-linear", task_type="CAUSAL_LM"),
    )
    with torch.no_grad():
        for name, parameter in tuned.named_parameters():
            if "lora_B" in name:
                parameter.normal_(0, 0.02)
    tuned.save_pretrained(work / "adapter")
    tuned.merge_and_unload().save_pretrained(work / "merged")
    for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja", "generation_config.json"):
        if (model / name).exists():
            shutil.copy(model / name, work / "merged" / name)
    env = {**os.environ, "PYTHONPATH": str(llama_cpp / "gguf-py")}
    for quantization in QUANTIZATIONS:
        convert = [sys.executable, str(llama_cpp / "convert_hf_to_gguf.py"), str(work / "merged")]
        convert += ["--outtype", quantization, "--outfile", str(work / f"merged-{quantization}.gguf")]
        subprocess.run(convert, env=env, check=True, capture_output=True)


def prompt_ids(model: Path) -> tuple[list[int], str, int]:
    """The engine's prompt for MESSAGES (ids and text), and the end-of-turn token."""
    from transformers import AutoTokenizer

    from openft.data.chat_format import ChatTemplate

    tokenizer = AutoTokenizer.from_pretrained(model)
    ids = ChatTemplate(tokenizer).prompt_ids(MESSAGES)
    return ids, tokenizer.decode(ids), tokenizer.eos_token_id


def llama_rate(gguf: Path, model: Path, threads: int, tokens: int) -> float:
    """Through create_completion, streamed, given the prompt's text (0.3.36 crashed here in
    Llama.generate with sampling arguments, and in create_completion given token ids): the reply
    runs `tokens` tokens, end of turn banned; the time from its first token. The prompt goes in
    one token at a time (n_batch 1): evaluating several at once crashed this build in ggml, and
    decoding is one token a step either way."""
    from llama_cpp import Llama

    ids, text, eos = prompt_ids(model)
    llm = Llama(str(gguf), n_ctx=1024, n_threads=threads, n_batch=1, verbose=False)
    if llm.tokenize(text.encode(), add_bos=False, special=True) != ids:
        raise SystemExit("llama.cpp tokenizes the prompt otherwise than openft")

    def once() -> float:
        llm.reset()
        chunks = llm.create_completion(
            text, max_tokens=tokens, temperature=0.0, top_k=1, repeat_penalty=1.0, logit_bias={eos: -100.0},
            stream=True,
        )  # fmt: skip
        stamps = [time.perf_counter() for _ in chunks]
        return (tokens - 1) / (stamps[-1] - stamps[0])

    once()  # warm
    return once()


def openft_rate(work: Path, model: Path, threads: int, tokens: int) -> float:
    from openft.inference.batched import BatchedEngine
    from openft.inference.engine import ModelRef, Prompt, SamplingParams
    from openft.settings import Settings
    from openft.storage import Storage

    (work / "models").mkdir(exist_ok=True)
    if not (work / "models" / "base").exists():
        (work / "models" / "base").symlink_to(model.resolve(), target_is_directory=True)
    settings = Settings(data_dir=work / "data")  # OPENFT_COMPUTE_DTYPE and OPENFT_BATCH_INVARIANT
    storage = Storage.for_settings(settings)
    storage.put_dir(work / "adapter", "adapters/bench")
    engine = BatchedEngine(
        work / "models",
        threads,
        storage,
        work / "cache",
        compute_dtype=settings.compute_dtype,
        batch_invariant=settings.batch_invariant,
    )
    *_, eos = prompt_ids(model)
    params = SamplingParams(max_tokens=tokens, temperature=0, logit_bias=((eos, -100.0),))
    fine_tune = ModelRef("base", "adapters/bench")

    def once() -> float:
        stamps = [time.perf_counter() for _ in engine.generate(fine_tune, Prompt(MESSAGES), params)]
        return (len(stamps) - 1) / (stamps[-1] - stamps[0])

    once()  # loads the model and the adapter
    return once()


def measure(side: str, args) -> float:
    """One round of one side, in a process of its own."""
    command = [sys.executable, __file__, "--side", side, "--work", str(args.work), "--model", str(args.model)]
    command += ["--threads", str(args.threads), "--tokens", str(args.tokens)]
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    return float(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=Path(".openft/models/SmolLM2-135M-Instruct"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--tokens", type=int, default=96)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--llama-cpp", type=Path, default=LLAMA_CPP, help="llama.cpp's source (its converter)")
    parser.add_argument("--json", action="store_true", help="print one JSON record of the figures at the end")
    parser.add_argument("--side", help=argparse.SUPPRESS)  # one round of one side (a child process)
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.side:
        if args.side == "openft":
            rate = openft_rate(args.work, args.model, args.threads, args.tokens)
        else:
            rate = llama_rate(args.work / f"merged-{args.side}.gguf", args.model, args.threads, args.tokens)
        print(rate, flush=True)
        os._exit(0)  # not the interpreter's teardown: the engine's scheduler thread is still in torch

    with tempfile.TemporaryDirectory() as scratch:
        args.work = Path(scratch)
        prepare(args.model, args.work, args.llama_cpp)
        sides = ["openft", *QUANTIZATIONS]
        rates = {side: [] for side in sides}
        for _ in range(args.rounds):
            for side in sides:
                rates[side].append(measure(side, args))
    median = {side: statistics.median(values) for side, values in rates.items()}
    print(f"1 stream, LoRA applied, {args.threads} threads, {args.tokens} tokens, median of {args.rounds}:")
    for side, values in rates.items():
        name = "openft engine" if side == "openft" else f"llama.cpp {side}"
        print(f"  {name:16} {median[side]:7.1f} tokens/s  (rounds: {', '.join(f'{v:.1f}' for v in values)})")
    ratios = {f"openft / llama.cpp {q}": median["openft"] / median[q] for q in QUANTIZATIONS}
    for label, ratio in ratios.items():
        print(f"  {label}: {ratio:.2f}x (goal at least 1)")
    if args.json:
        print(json.dumps({"figures": {"tokens/s": median, "rounds": rates}, "ratios": ratios}))


if __name__ == "__main__":
    main()
