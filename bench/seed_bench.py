"""The seed workflow's figures, through the API of a real server, against a peer in the same run.

    .venv/bin/python bench/seed_bench.py [--data-dir DIR]

Prints: job create → first training step latency, training tokens/s (trained tokens over the
time from the first to the last step), chat decode tokens/s through the HTTP API, and the same
prompt decoded by plain transformers `generate` in this process after the server has stopped
(the peer), with the ratio API / generate.
"""

import argparse
import tempfile
import time
from pathlib import Path

from openai import OpenAI

from openft.cli.demo import background_server
from openft.models.store import import_bundled

REPO = Path(__file__).resolve().parent.parent
PROMPT = [{"role": "user", "content": "Write a long story about a dragon who learns to bake bread."}]
DECODE_TOKENS = 96
CHAT_RUNS = 3


def train(client: OpenAI) -> dict:
    uploaded = client.files.create(file=(REPO / "examples" / "marv.jsonl").open("rb"), purpose="fine-tune")
    created = time.time()
    job = client.fine_tuning.jobs.create(training_file=uploaded.id, model="gpt-3.5-turbo", suffix="bench", seed=1)
    first_step = last_step = None
    while job.status not in ("succeeded", "failed", "cancelled"):
        steps = [e for e in client.fine_tuning.jobs.list_events(job.id, limit=5).data if e.type == "metrics"]
        if steps and first_step is None:
            first_step = time.time()
        if steps:
            last_step = time.time()
        time.sleep(0.2)
        job = client.fine_tuning.jobs.retrieve(job.id)
    assert job.status == "succeeded", job.error
    return {
        "create_to_first_step_s": first_step - created,
        "train_tokens_per_s": job.trained_tokens / (last_step - first_step),
        "trained_tokens": job.trained_tokens,
        "job_wall_s": time.time() - created,
    }


def chat(client: OpenAI) -> dict:
    client.chat.completions.create(model="gpt-3.5-turbo", messages=PROMPT, max_tokens=4)  # load the model
    tokens, seconds = 0, 0.0
    for _ in range(CHAT_RUNS):
        started = time.time()
        completion = client.chat.completions.create(
            model="gpt-3.5-turbo", messages=PROMPT, max_tokens=DECODE_TOKENS, temperature=0
        )
        seconds += time.time() - started
        tokens += completion.usage.completion_tokens
    started = time.time()
    stream = client.chat.completions.create(
        model="gpt-3.5-turbo", messages=PROMPT, max_tokens=DECODE_TOKENS, temperature=0, stream=True
    )
    first_token = next(chunk for chunk in stream if chunk.choices and chunk.choices[0].delta.content)
    ttft = time.time() - started
    del first_token
    return {"api_tokens_per_s": tokens / seconds, "api_ttft_s": ttft}


def generate_peer(model_dir: Path) -> float:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.set_num_threads(2)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    inputs = tokenizer.apply_chat_template(PROMPT, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    model.generate(**inputs, max_new_tokens=4, do_sample=False)
    tokens, seconds = 0, 0.0
    for _ in range(CHAT_RUNS):
        started = time.time()
        output = model.generate(**inputs, max_new_tokens=DECODE_TOKENS, do_sample=False)
        seconds += time.time() - started
        tokens += output.shape[1] - inputs["input_ids"].shape[1]
    return tokens / seconds


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data-dir", type=Path, default=Path(tempfile.mkdtemp(prefix="openft-bench-")))
    parser.add_argument("--port", type=int, default=8765)
    args = parser.parse_args()
    import_bundled(args.data_dir / "models")
    with background_server(args.data_dir, args.port, quiet=True) as (base_url, _):
        client = OpenAI(base_url=base_url, api_key="sk-bench")
        figures = train(client) | chat(client)
    figures["generate_tokens_per_s"] = generate_peer(import_bundled(args.data_dir / "models"))
    figures["api_over_generate"] = figures["api_tokens_per_s"] / figures["generate_tokens_per_s"]
    for name, value in figures.items():
        print(f"{name:24} {value:10.2f}")


if __name__ == "__main__":
    main()
