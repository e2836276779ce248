"""A training file rendered with its base's tokenizer once, for the memory plan and the trainer.

The memory plan (trainer/plan.py) counts the tokens of the largest batch a job makes and the
positions its LM head computes; the trainer trains on the very ids and labels counted, read back
from here rather than rendered again. The file is rendered by the trainer's own label code
(`labels.render_stream`) and cached as JSON lines, one `RenderedExample` each, under
`<cache>/<key>.jsonl`, the key a hash of the file's bytes, the tokenizer's folder and files, the
context length and the label code itself (so an upgrade that labels otherwise renders again):
the same file counted again (a retried job, a second job on it) is read, not rendered.

No torch here: the caller passes the tokenizer (or a function that loads it, called only when the
file is not cached yet).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from openft.data import chat_format, labels, pieces
from openft.data.labels import IGNORE_INDEX, RenderedExample, render_stream

FORMAT = 1  # of the cached lines; a change re-renders every file
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja", "special_tokens_map.json")


@dataclass(frozen=True)
class Tokenized:
    """A file's examples as the trainer trains on them: those with a trained token."""

    path: Path  # the cached rendering (`read_examples`)
    lengths: tuple[int, ...]  # per example, its longest sequence's tokens: a batch row's width
    rows: tuple[int, ...]  # per example, its sequences: the rows it adds to a batch
    trained: tuple[int, ...]  # per example, its trained tokens: the LM head's positions
    skipped: tuple[int, ...]  # lines (1-based) with no trained token within the context

    def largest_batch(self, batch_size: int) -> tuple[int, int, int]:
        """(rows, tokens per row, LM head positions) bounding any batch of `batch_size` examples:
        the trainer pads a batch to its longest row and computes the head on trained positions."""
        rows = sorted(self.rows, reverse=True)[:batch_size]
        trained = sorted(self.trained, reverse=True)[:batch_size]
        return sum(rows), max(self.lengths), sum(trained)


def tokenize_file(path: Path, tokenizer_dir: Path, load_tokenizer: Callable, max_length: int, cache: Path) -> Tokenized:
    """The examples of the chat JSONL file at `path` (validated upstream), rendered with the
    tokenizer that `load_tokenizer()` returns, or read from `cache` if done before."""
    cached = cache / f"{_key(path, tokenizer_dir, max_length)}.jsonl"
    if not cached.exists():
        cache.mkdir(parents=True, exist_ok=True)
        partial = cached.with_name(f".{cached.name}.{os.getpid()}")
        with open(path, encoding="utf-8") as lines, open(partial, "w", encoding="utf-8") as out:
            examples = (json.loads(line) for line in lines if line.strip())
            for rendered in render_stream(load_tokenizer(), examples, max_length):
                if isinstance(rendered, Exception):
                    raise rendered
                out.write(
                    json.dumps([rendered.input_ids, rendered.labels, rendered.sequence_starts, rendered.truncated])
                )
                out.write("\n")
        partial.rename(cached)  # complete or absent
    return _counted(cached)


def read_examples(tokenized: Path) -> tuple[list[RenderedExample], list[int]]:
    """The cached examples with a trained token, and the lines (1-based) of those without one."""
    examples, skipped = [], []
    with open(tokenized, encoding="utf-8") as lines:
        for line_no, line in enumerate(lines, 1):
            input_ids, labels, starts, truncated = json.loads(line)
            if has_trained_token(labels):
                examples.append(RenderedExample(input_ids, labels, truncated, tuple(starts)))
            else:
                skipped.append(line_no)
    return examples, skipped


def has_trained_token(labels: list[int]) -> bool:
    """Whether a position predicts a trained token (the first token is predicted by none)."""
    return any(label != IGNORE_INDEX for label in labels[1:])


def _counted(cached: Path) -> Tokenized:
    examples, skipped = read_examples(cached)
    return Tokenized(
        path=cached,
        lengths=tuple(max(len(ids) for ids, _ in ex.sequences()) for ex in examples),
        rows=tuple(len(ex.sequence_starts) for ex in examples),
        trained=tuple(sum(label != IGNORE_INDEX for label in ex.labels) for ex in examples),
        skipped=tuple(skipped),
    )


def _key(path: Path, tokenizer_dir: Path, max_length: int) -> str:
    digest = hashlib.sha256(f"{FORMAT} {max_length} {Path(tokenizer_dir).resolve()}\n".encode())
    for name in TOKENIZER_FILES:
        if (file := Path(tokenizer_dir) / name).exists():
            digest.update(name.encode() + file.read_bytes())
    for module in (labels, chat_format, pieces):
        digest.update(Path(module.__file__).read_bytes())
    with open(path, "rb") as data:
        for block in iter(lambda: data.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:32]
