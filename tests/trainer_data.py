"""A training set small enough for a few CPU steps, and reading the trainer's events."""

import json
from pathlib import Path

QUESTIONS = [
    "What is the capital of France?",
    "How do I boil an egg?",
    "Tell me a joke.",
    "What is 2+2?",
    "Name a colour.",
    "Why is the sky blue?",
    "What's your favourite food?",
    "How far is the moon?",
    "Who wrote Hamlet?",
    "What time is it?",
    "Recommend a book.",
    "How do plants grow?",
    "What is Python?",
    "Where is Tokyo?",
]


def write_jsonl(path: Path, questions: list[str]) -> Path:
    lines = [
        {"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": "Ahoy!"}]} for q in questions
    ]
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


def losses(events: list[dict]) -> list[float]:
    return [e["train_loss"] for e in events if e["type"] == "metrics"]
