"""An exported GGUF in llama.cpp against openft serving the same fine-tune through its API, in one
run, on the same prompt.

    .venv/bin/python bench/export_bench.py --data-dir .openft --model ft:gpt-3.5-turbo:personal:marv:AbCd1234

Needs llama.cpp (`make llama-cpp`). Starts `openft serve` on the data dir (a free loopback port,
no worker) and exports the fine-tune as GGUF (f16; `--quantizations f16 q8_0` for more) with
`openft models export`'s service; then for each:
- the greedy reply to a chat prompt (end of turn allowed, up to 48 tokens) from llama.cpp and
  from the API, and whether they are the same text;
- single-stream decode speed: 128 tokens with the end-of-turn token banned, tokens after the
  first per second (prefill excluded), on the same number of threads: the API's from its
  streamed chunks' arrival times and its usage count, llama.cpp's from its own token loop;
  and their ratio.
llama.cpp is given the prompt token ids of openft's chat template (checked to be what it
tokenizes the same text into).
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from openai import OpenAI
from transformers import AutoTokenizer

from openft.data.chat_format import ChatTemplate
from openft.services.exports import ExportService
from openft.services.files import FileService
from openft.services.models import ModelService
from openft.settings import Settings
from openft.store.db import Database

MESSAGES = [
    {"role": "system", "content": "You are a helpful assistant."},
    {"role": "user", "content": "What is the capital of Italy, and what is it famous for?"},
]


def serve(data_dir: Path, threads: int) -> tuple[subprocess.Popen, str]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    command = [sys.executable, "-m", "openft", "serve", "--data-dir", str(data_dir), "--port", str(port), "--no-worker"]
    env = {**os.environ, "OPENFT_SERVE_THREADS": str(threads)}
    server = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base_url = f"http://127.0.0.1:{port}/v1"
    for _ in range(600):
        try:
            if httpx.get(base_url.removesuffix("/v1") + "/health").status_code == 200:
                return server, base_url
        except httpx.HTTPError:
            time.sleep(0.2)
    server.kill()
    raise SystemExit("openft serve did not start")


def api_run(client: OpenAI, model: str, max_tokens: int, ban: int | None) -> tuple[str, float]:
    """The streamed greedy reply, and decode tokens/s after the first token."""
    bias = {str(ban): -100} if ban is not None else None
    stream = client.chat.completions.create(
        model=model, messages=MESSAGES, temperature=0, max_tokens=max_tokens, logit_bias=bias,
        stream=True, stream_options={"include_usage": True},
    )  # fmt: skip
    stamps, text, tokens = [], [], 0
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            stamps.append(time.perf_counter())
            text.append(chunk.choices[0].delta.content)
        if chunk.usage:
            tokens = chunk.usage.completion_tokens
    return "".join(text), (tokens - 1) / (stamps[-1] - stamps[0])


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
    parser.add_argument("--threads", type=int, default=2)
    # q8_0 too where llama.cpp's quantized CPU kernels run: on the Intel AMX host of bench/README.md
    # this build segfaults decoding any quantized GGUF, llama.cpp's own Q4_1 of the bundled model too.
    parser.add_argument("--quantizations", nargs="+", default=["f16"], choices=["f32", "f16", "q8_0"])
    args = parser.parse_args()
    from llama_cpp import Llama

    settings = Settings(data_dir=args.data_dir)
    db = Database(settings)
    models = ModelService(settings, db)
    exports = ExportService(settings, db, models, FileService(settings, db))
    ref = models.resolve(exports.owner(args.model), args.model)
    tokenizer = AutoTokenizer.from_pretrained(settings.models_dir / ref.base_model)
    prompt = ChatTemplate(tokenizer).prompt_ids(MESSAGES)  # what the engine prompts with
    eos = tokenizer.convert_tokens_to_ids("<|im_end|>")

    server, base_url = serve(args.data_dir, args.threads)
    try:
        client = OpenAI(base_url=base_url, api_key="sk-bench", timeout=600)
        api_run(client, args.model, 2, None)  # load the model and adapter
        api_reply, _ = api_run(client, args.model, 48, None)
        _, api_rate = api_run(client, args.model, args.tokens, eos)
    finally:
        server.terminate()
        server.wait()
    print(f"openft API ({args.threads} threads): {api_rate:6.1f} tokens/s decode; reply {api_reply!r}")

    with tempfile.TemporaryDirectory() as scratch:
        for quantization in args.quantizations:
            output = Path(scratch) / quantization
            exports.export_to(exports.owner(args.model), args.model, "gguf", quantization, output)
            (gguf_file,) = output.glob("*.gguf")
            llm = Llama(str(gguf_file), n_ctx=1024, n_threads=args.threads, n_batch=512, verbose=False)
            same_prompt = llm.tokenize(tokenizer.decode(prompt).encode(), add_bos=False, special=True) == prompt
            reply_ids, _ = llama_run(llm, prompt, 48, eos, ban_eos=False)
            reply = tokenizer.decode(reply_ids)
            _, rate = llama_run(llm, prompt, args.tokens, eos, ban_eos=True)
            print(
                f"llama.cpp {quantization:5}: {rate:6.1f} tokens/s decode ({rate / api_rate:.2f}x openft's API); "
                f"same greedy reply: {reply == api_reply}; "
                f"llama.cpp tokenizes the prompt text as openft: {same_prompt}"
            )


if __name__ == "__main__":
    main()
