"""The data check: everything about a training file before anything trains.

The file is validated (`openft.data.validate`), then every valid example is rendered with the
real tokenizer and chat template of the model that will train, through the trainer's own label
code (`openft.data.labels.render_stream`, the batched `render_example`), so the token counts,
truncation and shown examples are what the trainer will see. The file is streamed, in bounded
memory, and rendered in batches (speed: `bench/README.md`). The report adds the resolved
hyperparameters, the billed tokens and OpenAI's price for them, and the ETA from a training
speed its caller gives (or none).

`openft data check` (cli/data.py: flags, printing, the ETA on this host) and
`GET /v1/openft/files/{id}/check` (services/file_checks.py: `eta` null) both return
`build_report`'s object; its keys are stable (other tools read it):

    {"ok": bool,                      # false when there is any error: the exit code is then 1
     "model": str,                    # whose tokenizer and chat template rendered the data
     "context_tokens": int,           # examples are truncated to this many tokens
     "training": FILE, "validation": FILE | null,
     "hyperparameters": {"n_epochs": int, "batch_size": int, "learning_rate_multiplier": float},
     "billed_tokens": int | null,     # training tokens x n_epochs
     "cost": {"model": str, "usd_per_1k_tokens": float, "usd": float,
              "reference": bool} | null,   # reference: --model is not an OpenAI model
     "eta": {"seconds": float, "tokens_per_second": float,
             "source": "benchmark" | "jobs"} | null,
     "shown": [{"line": int, "truncated": bool,
                "segments": [{"text": str, "trained": bool, "special": bool}]}],  # --show only
     "plan": PLAN | null}             # `openft data check` only: trainer/plan.py's `Plan.to_dict()`
                                      # on this host, plus "fits", "description", "device_name"
    FILE = {"file": str,
            "errors": [ISSUE], "warnings": [ISSUE],  # ISSUE = {"line": int | null, "code": str,
                                                      #          "message": str}
            "stats": null | {"examples": int, "messages_per_example": DIST,
                             "tokens_per_example": DIST, "tokens": int, "trained_tokens": int,
                             "truncated_lines": [int]}}
    DIST = {"min", "p5", "median", "mean", "p95", "max"}: numbers

Codes are those of `openft.data.validate`, plus `invalid_n_examples` (fewer than 10 training
examples, OpenAI's message), `template_error` (the chat template failed on an example) and the
warning `example_too_long` (longer than the context: truncated, as OpenAI does).

Nothing here prints, loads a model or benchmarks: the caller passes the tokenizer, the context
length (the trainer's `MAX_LENGTH`) and the training speed.
"""

from __future__ import annotations

import gc
import itertools
from collections import deque
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

from openft.data.hyperparams import resolve_hyperparameters
from openft.data.labels import IGNORE_INDEX, RenderedExample, render_stream
from openft.data.pricing import REFERENCE_PRICE_MODEL, price_per_1k_tokens, training_cost_usd
from openft.data.stats import TokenStats, TokenTally
from openft.data.validate import DataIssue, ValidationReport, iter_chat_jsonl
from openft.settings import OPENAI_ALIASES


class UnreadableFile(Exception):
    """The file to check cannot be opened; the message names it and says why."""


@dataclass
class FileCheck:
    file: str  # as the report names it: a path, or an uploaded file's id
    errors: list[DataIssue]
    warnings: list[DataIssue]
    rendered: list[RenderedExample] = field(default_factory=list)  # the first `keep` (check_lines)
    lines: list[int] = field(default_factory=list)  # the file line of each of those
    stats: TokenStats | None = None

    def to_dict(self) -> dict:
        return {
            "file": self.file,
            "errors": [asdict(issue) for issue in self.errors],
            "warnings": [asdict(issue) for issue in self.warnings],
            "stats": self.stats.to_dict() if self.stats else None,
        }


def check_file(tokenizer, path: Path, max_length: int, keep: int = 0) -> FileCheck:
    """`check_lines` of the file at `path`, named by its path."""
    try:
        handle = open(path, "rb")
    except OSError as e:
        raise UnreadableFile(f"Cannot read {path}: {e.strerror}") from None
    with handle:
        return check_lines(tokenizer, handle, str(path), max_length, keep)


def check_lines(tokenizer, lines: Iterable[bytes], name: str, max_length: int, keep: int = 0) -> FileCheck:
    """Validate a file's `lines` (a binary file object), then render each valid example exactly as
    the trainer will, truncated to `max_length` tokens, keeping the first `keep` rendered examples
    (for --show) and, of the rest, only counts.

    The file is streamed (`iter_chat_jsonl`, `render_stream`): memory stays bounded whatever its
    size.
    """
    report = ValidationReport()
    result = FileCheck(name, report.errors, [])
    tally = TokenTally()
    too_long = []
    pending: deque[tuple[int, int]] = deque()  # (line, messages) of the examples being rendered

    def examples() -> Iterator[dict]:
        for line, example in iter_chat_jsonl(lines, report):
            pending.append((line, len(example["messages"])))
            yield example

    with _fewer_collections():
        for rendered in render_stream(tokenizer, examples(), max_length):
            line, messages = pending.popleft()
            if isinstance(rendered, Exception):
                detail = f"Line {line}: the chat template cannot render this example: {rendered}"
                result.errors.append(DataIssue(line, "template_error", detail))
                continue
            if rendered.truncated:
                too_long.append(_too_long(line, rendered, max_length))
            if len(result.rendered) < keep:
                result.rendered.append(rendered)
                result.lines.append(line)
            tally.add(rendered, messages, line)
    result.errors.sort(key=lambda issue: issue.line or 0)
    result.warnings = report.warnings + too_long
    if tally.lengths:
        result.stats = tally.stats()
    return result


@contextmanager
def _fewer_collections() -> Iterator[None]:
    """Rendering allocates millions of short-lived tuples (token offsets); at the default
    threshold Python's cyclic garbage collector runs every 700 of them, a sixth of the check's
    time. Cycles are still collected, only less often."""
    threshold = gc.get_threshold()
    gc.set_threshold(50_000, *threshold[1:])
    try:
        yield
    finally:
        gc.set_threshold(*threshold)


def _too_long(line: int, rendered: RenderedExample, max_length: int) -> DataIssue:
    detail = (
        f"Line {line}: longer than the {max_length}-token context; it will be truncated to its "
        f"first {max_length} tokens (as OpenAI does). Shorten or split it to silence this warning"
    )
    if all(label == IGNORE_INDEX for label in rendered.labels[1:]):
        detail += "; no trained token is left, so the trainer will skip it"
    return DataIssue(line, "example_too_long", detail)


def shown_examples(tokenizer, training: FileCheck) -> list[dict]:
    """The report's `shown`: each kept example as runs of tokens that are alike (trained or not,
    special or not), each decoded from the very token ids the trainer gets."""
    special = set(tokenizer.all_special_ids)
    shown = []
    for rendered, line in zip(training.rendered, training.lines):
        runs = itertools.groupby(
            zip(rendered.input_ids, rendered.labels), key=lambda t: (t[1] != IGNORE_INDEX, t[0] in special)
        )
        segments = [
            {"text": tokenizer.decode([token for token, _ in run]), "trained": trained, "special": is_special}
            for (trained, is_special), run in runs
        ]
        shown.append({"line": line, "truncated": rendered.truncated, "segments": segments})
    return shown


def build_report(
    target: Target,
    training: FileCheck,
    valid: FileCheck | None,
    requested: dict,
    context_tokens: int,
    speed: dict | None,
) -> dict:
    """The report (see the module docstring). `speed` is this host's training speed for the
    target's base, `{"tokens_per_second": float, "source": "benchmark" | "jobs"}`
    (`runner/throughput.py`'s cache entry), or None to leave `eta` null."""
    n_examples = training.stats.examples if training.stats else 0
    hyperparameters = resolve_hyperparameters(n_examples, requested)
    report = {
        "ok": not training.errors and not (valid and valid.errors),
        "model": target.model,
        "context_tokens": context_tokens,
        "training": training.to_dict(),
        "validation": valid.to_dict() if valid else None,
        "hyperparameters": asdict(hyperparameters),
        "billed_tokens": None,
        "cost": None,
        "eta": None,
    }
    if training.stats is None:
        return report
    billed = training.stats.tokens * hyperparameters.n_epochs
    report["billed_tokens"] = billed
    report["cost"] = {
        "model": target.price_model,
        "usd_per_1k_tokens": price_per_1k_tokens(target.price_model),
        "usd": training_cost_usd(target.price_model, billed),
        "reference": target.reference_price,
    }
    if speed is not None:
        report["eta"] = {
            "seconds": round(billed / speed["tokens_per_second"], 1),
            "tokens_per_second": round(speed["tokens_per_second"], 1),
            "source": speed["source"],
        }
    return report


# ---------------------------------------------------------------------------------------------
# the model: whose tokenizer renders the data, and whose price applies


@dataclass(frozen=True)
class Target:
    model: str  # in the model store: its tokenizer, chat template and training speed apply
    price_model: str  # the OpenAI model whose price applies
    reference_price: bool  # `model` is not an OpenAI model: price_model is only a reference


def resolve_model(requested: str, base: str) -> Target:
    """What a requested model name means to the check: `base`, the model it trains on (which the
    caller resolved: an alias's base, a fine-tune's), tokenizes. An OpenAI name (an alias the
    server accepts, or any priced model, `ft:` fine-tunes of them included) is priced as itself;
    any other name as gpt-3.5-turbo, for reference."""
    if requested in OPENAI_ALIASES or price_per_1k_tokens(requested) is not None:
        return Target(base, requested, reference_price=False)
    return Target(base, REFERENCE_PRICE_MODEL, reference_price=True)
