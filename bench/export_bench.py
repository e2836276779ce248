"""An exported GGUF in llama.cpp against openft's own engine, in one run, on the same prompt.

    .venv/bin/python bench/export_bench.py --data-dir .openft --model ft:gpt-3.5-turbo:personal:marv:AbCd1234

Needs `pip install '.[bench]'` (llama-cpp-python, which compiles llama.cpp from source). Exports
the fine-tune as GGUF (F16 and Q8_0) with `openft models export`'s service, then for each:
- the greedy reply to a chat prompt (end of turn allowed, up to 48 tokens) from llama.cpp and
  from openft's engine (`BatchedEngine`, in process, as `openft serve` runs it), and whether
  their tokens agree;
- single-stream decode speed: 128 tokens with the end-of-turn token banned, tokens after the
  first per second (prefill excluded), 2 threads each.
Both are given the same prompt token ids (openft's chat template).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from transformers import AutoTokenizer

from openft.data.chat_format import ChatTemplate
from openft.inference.batched import BatchedEngine
from openft.inference.engine import ModelRef, Prompt, SamplingParams
from openft.services.exports import ExportService
from openft.services.files import FileService
from openft.services.models import ModelService
from openft.settings import Settings
from openft.storage import Storage
from openft.store.db import Database

MESSAGES = [
    {"role": "system", "content": "You are a helpful assistant."},
    {"role": "user", "content": "What is the capital of Italy, and what is it famous for?"},
]
THREADS = 2


def openft_run(engine: BatchedEngine, model: ModelRef, params: SamplingParams) -> tuple[str, float]:
    """The greedy reply, and decode tokens/s after the first token."""
    stamps, text = [], []
    for chunk in engine.generate(model, Prompt(MESSAGES), params):
        stamps.append(time.perf_counter())
        text.append(chunk.text)
    return "".join(text), (chunk.completion_tokens - 1) / (stamps[-1] - stamps[0])


def llama_run(llm, prompt: list[int], tokens: int, eos: int, ban_eos: bool) -> tuple[list[int], float]:
    """Greedy token ids (up to `tokens`), and decode tokens/s after the first token."""
    import numpy as np

    def ban(_, scores):
        scores[eos] = -np.inf
        return scores

    out, stamps = [], []
    llm.reset()
    processors = [ban] if ban_eos else None
    for token in llm.generate(prompt, temp=0.0, top_k=1, repeat_penalty=1.0, logits_processor=processors):
        stamps.append(time.perf_counter())
        if token == eos and not ban_eos:
            break
        out.append(token)
        if len(out) == tokens:
            break
    return out, (len(stamps) - 1) / (stamps[-1] - stamps[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, default=Path(".openft"))
    parser.add_argument("--model", required=True, help="the ft: model to export")
    parser.add_argument("--tokens", type=int, default=128)
    args = parser.parse_args()
    from llama_cpp import Llama

    settings = Settings(data_dir=args.data_dir, serve_threads=THREADS)
    db = Database(settings)
    models = ModelService(settings, db)
    exports = ExportService(settings, db, models, FileService(settings, db))
    ref = models.resolve(exports.owner(args.model), args.model)
    engine = BatchedEngine(settings.models_dir, THREADS, Storage.for_settings(settings), settings.cache_dir)
    tokenizer = AutoTokenizer.from_pretrained(settings.models_dir / ref.base_model)
    prompt = ChatTemplate(tokenizer).prompt_ids(MESSAGES)  # what the engine prompts with
    eos = tokenizer.convert_tokens_to_ids("<|im_end|>")
    reply_params = SamplingParams(max_tokens=48, temperature=0)
    speed_params = SamplingParams(max_tokens=args.tokens, temperature=0, logit_bias=((eos, -100.0),))
    openft_run(engine, ref, SamplingParams(max_tokens=2, temperature=0))  # load the model and adapter
    openft_reply, _ = openft_run(engine, ref, reply_params)
    _, openft_rate = openft_run(engine, ref, speed_params)
    print(f"openft engine: {openft_rate:6.1f} tokens/s decode; reply {openft_reply!r}")

    with tempfile.TemporaryDirectory() as scratch:
        for quantization in ("f16", "q8_0"):
            output = Path(scratch) / quantization
            exports.export_to(exports.owner(args.model), args.model, "gguf", quantization, output)
            (gguf_file,) = output.glob("*.gguf")
            llm = Llama(str(gguf_file), n_ctx=1024, n_threads=THREADS, n_batch=512, verbose=False)
            same_prompt = llm.tokenize(tokenizer.decode(prompt).encode(), add_bos=False, special=True) == prompt
            reply_ids, _ = llama_run(llm, prompt, 48, eos, ban_eos=False)
            reply = tokenizer.decode(reply_ids)
            _, rate = llama_run(llm, prompt, args.tokens, eos, ban_eos=True)
            print(
                f"llama.cpp {quantization:5}: {rate:6.1f} tokens/s decode ({rate / openft_rate:.2f}x openft); "
                f"reply {reply!r}; same greedy reply: {reply == openft_reply}; "
                f"llama.cpp tokenizes the prompt text as openft: {same_prompt}"
            )


if __name__ == "__main__":
    main()
