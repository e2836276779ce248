"""An eval run against the same requests sent one by one: what batching buys an eval.

    .venv/bin/python bench/evals_bench.py [--rows 200] [--tokens 16] [--port 8767]

A real `openft serve` on a fresh data dir holding the bundled model. The peer first: the
`--rows` prompts sent one after another through `/v1/chat/completions` (temperature 0, seed 42,
`max_completion_tokens` = --tokens), as a script that loops over a dataset does. Then the same
rows as one Evals API run with a `completions` source (the same model and sampling
parameters), timed from `runs.create` to `completed`: the eval runner keeps 32 rows in flight,
so the engine decodes them in batches. One untimed request first loads the model. Prints both
times, the ratio (issue 27's goal: at least 3x), and whether every row's reply is the chat
endpoint's (batch invariance: it should be).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from openai import OpenAI

from openft.cli.demo import background_server
from openft.models.store import import_bundled
from openft.settings import BUNDLED_MODEL

TOPICS = ["the sea", "a mountain", "bread", "a library", "rain", "a bicycle", "the moon", "coffee", "a forest", "snow"]


def prompts(n: int) -> list[str]:
    return [f"Write one sentence about {TOPICS[i % len(TOPICS)]} (#{i})." for i in range(n)]


def one_by_one(client: OpenAI, questions: list[str], tokens: int) -> tuple[float, list[str]]:
    started = time.perf_counter()
    replies = [
        client.chat.completions.create(
            model=BUNDLED_MODEL,
            messages=[{"role": "user", "content": question}],
            temperature=0,
            seed=42,
            max_completion_tokens=tokens,
        )
        .choices[0]
        .message.content
        for question in questions
    ]
    return time.perf_counter() - started, replies


def as_eval_run(client: OpenAI, questions: list[str], tokens: int) -> tuple[float, list[str]]:
    evaluation = client.evals.create(
        name="bench",
        data_source_config={"type": "custom", "item_schema": {"type": "object"}},
        testing_criteria=[
            {
                "type": "string_check",
                "name": "said",
                "input": "{{ sample.output_text }}",
                "reference": "a",
                "operation": "like",
            }
        ],
    )
    started = time.perf_counter()
    run = client.evals.runs.create(
        evaluation.id,
        data_source={
            "type": "completions",
            "model": BUNDLED_MODEL,
            "source": {"type": "file_content", "content": [{"item": {"question": q}} for q in questions]},
            "input_messages": {"type": "template", "template": [{"role": "user", "content": "{{ item.question }}"}]},
            "sampling_params": {"temperature": 0, "seed": 42, "max_completion_tokens": tokens},
        },
    )
    while run.status in ("queued", "in_progress"):
        time.sleep(0.1)
        run = client.evals.runs.retrieve(run.id, eval_id=evaluation.id)
    seconds = time.perf_counter() - started
    assert run.status == "completed", run.error
    items = client.evals.runs.output_items.list(run.id, eval_id=evaluation.id, limit=100)
    return seconds, [item.sample.output[0].content for item in items]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=200)
    parser.add_argument("--tokens", type=int, default=16)
    parser.add_argument("--port", type=int, default=8767)
    args = parser.parse_args()
    questions = prompts(args.rows)
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp)
        import_bundled(data_dir / "models")
        with background_server(data_dir, args.port, quiet=True) as (base_url, _):
            client = OpenAI(base_url=base_url, api_key="sk-bench", timeout=600)
            one_by_one(client, questions[:1], 1)  # loads the model
            sequential, direct = one_by_one(client, questions, args.tokens)
            batched, graded = as_eval_run(client, questions, args.tokens)
    print(f"{args.rows} chat requests one by one: {sequential:7.1f} s ({args.rows / sequential:.2f} rows/s)")
    print(f"{args.rows} rows as one eval run:      {batched:7.1f} s ({args.rows / batched:.2f} rows/s)")
    print(f"eval run / one by one: {sequential / batched:.2f}x faster (goal 3x)")
    same = sum(a == b for a, b in zip(direct, graded, strict=True))
    print(f"replies equal to the chat endpoint's: {same}/{args.rows}")


if __name__ == "__main__":
    main()
