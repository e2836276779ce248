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
     "method": "supervised" | "dpo",  # --method, else what the training file holds
     "training": FILE, "validation": FILE | null,
     "hyperparameters": {"n_epochs": int, "batch_size": int, "learning_rate_multiplier": float,
                         "beta": float},               # beta: DPO only
     "billed_tokens": int | null,     # training tokens x n_epochs
     "cost": {"model": str, "usd_per_1k_tokens": float, "usd": float,
              "reference": bool} | null,   # reference: --model is not an OpenAI model
     "eta": {"seconds": float, "tokens_per_second": float,
             "source": "benchmark" | "jobs"} | null,
     "shown": [{"line": int, "truncated": bool,
                "segments": [{"text": str, "trained": bool, "special": bool}],  # --show only
                "rejected_segments": [SEGMENT]}],   # DPO: the non-preferred side (segments: the
                                                    # preferred), trained = the compared reply
     "plan": PLAN | null}             # `openft data check` only: trainer/plan.py's `Plan.to_dict()`
                                      # on this host, plus "fits", "description", "device_name"
    FILE = {"file": str,
            "errors": [ISSUE], "warnings": [ISSUE],  # ISSUE = {"line": int | null, "code": str,
                                                      #          "message": str}
            "stats": null | STATS,
            "preference": null | {"chosen": STATS, "rejected": STATS}}   # DPO: each side alone
    STATS = {"examples": int, "messages_per_example": DIST, "tokens_per_example": DIST,
             "tokens": int, "trained_tokens": int, "truncated_lines": [int]}
    # a DPO file's STATS count a pair as one example of both sides' tokens (the trainer runs
    # both, each epoch); messages are the input's plus the reply
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
from openft.data.preference import SIDES, preference_chats
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
    method: str = "supervised"
    rejected: list[RenderedExample] = field(default_factory=list)  # DPO: the other side of each of `rendered`
    sides: dict[str, TokenStats] | None = None  # DPO: "chosen" and "rejected" alone

    def to_dict(self) -> dict:
        return {
            "file": self.file,
            "errors": [asdict(issue) for issue in self.errors],
            "warnings": [asdict(issue) for issue in self.warnings],
            "stats": self.stats.to_dict() if self.stats else None,
            "preference": {side: stats.to_dict() for side, stats in self.sides.items()} if self.sides else None,
        }


def check_file(tokenizer, path: Path, max_length: int, keep: int = 0, method: str | None = None) -> FileCheck:
    """`check_lines` of the file at `path`, named by its path."""
    try:
        handle = open(path, "rb")
    except OSError as e:
        raise UnreadableFile(f"Cannot read {path}: {e.strerror}") from None
    with handle:
        return check_lines(tokenizer, handle, str(path), max_length, keep, method)


def check_lines(
    tokenizer, lines: Iterable[bytes], name: str, max_length: int, keep: int = 0, method: str | None = None
) -> FileCheck:
    """Validate a file's `lines` (a binary file object) as `method`'s examples (None: as its
    first example's), then render each valid example exactly as the trainer will, truncated to
    `max_length` tokens, keeping the first `keep` rendered examples (for --show) and, of the rest,
    only counts. A DPO pair is rendered as its two sides (`openft.data.preference`).

    The file is streamed (`iter_chat_jsonl`, `render_stream`): memory stays bounded whatever its
    size.
    """
    report = ValidationReport(method=method)
    result = FileCheck(name, report.errors, [])
    tally = TokenTally()
    sides = {side: TokenTally() for side in SIDES}
    too_long = []
    pending: deque[tuple[int, int]] = deque()  # (line, messages) of the examples being rendered

    def examples() -> Iterator[dict]:
        for line, example in iter_chat_jsonl(lines, report):
            chats = preference_chats(example) if report.method == "dpo" else [example]
            for chat in chats:
                pending.append((line, len(chat["messages"])))
                yield chat

    rendered_stream = render_stream(tokenizer, examples(), max_length)
    with _fewer_collections():
        for rendered in rendered_stream:
            line, messages = pending.popleft()
            pair = None
            if report.method == "dpo":  # its other side is next
                pair = (rendered, next(rendered_stream))
                pending.popleft()
                rendered = next((side for side in pair if isinstance(side, Exception)), pair[0])
            if isinstance(rendered, Exception):
                detail = f"Line {line}: the chat template cannot render this example: {rendered}"
                result.errors.append(DataIssue(line, "template_error", detail))
                continue
            if any(side.truncated for side in pair or [rendered]):
                too_long.append(_too_long(line, pair or [rendered], max_length))
            if len(result.rendered) < keep:
                result.rendered.append(rendered)
                result.lines.append(line)
                if pair:
                    result.rejected.append(pair[1])
            if pair:
                tally.add_pair(*pair, messages, line)
                for side, side_rendered in zip(SIDES, pair):
                    sides[side].add(side_rendered, messages, line)
            else:
                tally.add(rendered, messages, line)
    result.errors.sort(key=lambda issue: issue.line or 0)
    result.warnings = report.warnings + too_long
    result.method = report.method or "supervised"
    if tally.lengths:
        result.stats = tally.stats()
        if result.method == "dpo":
            result.sides = {side: side_tally.stats() for side, side_tally in sides.items()}
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


def _too_long(line: int, rendered: list[RenderedExample], max_length: int) -> DataIssue:
    """The warning for an example (or a DPO pair's sides) of which some are truncated."""
    detail = (
        f"Line {line}: longer than the {max_length}-token context; it will be truncated to its "
        f"first {max_length} tokens (as OpenAI does). Shorten or split it to silence this warning"
    )
    if any(all(label == IGNORE_INDEX for label in side.labels[1:]) for side in rendered):
        detail += "; no trained token is left, so the trainer will skip it"
    return DataIssue(line, "example_too_long", detail)


def shown_examples(tokenizer, training: FileCheck) -> list[dict]:
    """The report's `shown`: each kept example as runs of tokens that are alike (trained or not,
    special or not), each decoded from the very token ids the trainer gets."""
    special = set(tokenizer.all_special_ids)

    def segments(rendered: RenderedExample) -> list[dict]:
        runs = itertools.groupby(
            zip(rendered.input_ids, rendered.labels), key=lambda t: (t[1] != IGNORE_INDEX, t[0] in special)
        )
        return [
            {"text": tokenizer.decode([token for token, _ in run]), "trained": trained, "special": is_special}
            for (trained, is_special), run in runs
        ]

    shown = []
    for n, (rendered, line) in enumerate(zip(training.rendered, training.lines)):
        example = {"line": line, "truncated": rendered.truncated, "segments": segments(rendered)}
        if training.rejected:
            rejected = training.rejected[n]
            example["truncated"] |= rejected.truncated
            example["rejected_segments"] = segments(rejected)
        shown.append(example)
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
    hyperparameters = resolve_hyperparameters(n_examples, requested, training.method)
    report = {
        "ok": not training.errors and not (valid and valid.errors),
        "model": target.model,
        "method": training.method,
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
