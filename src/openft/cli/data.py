"""`openft data check`: everything about a training file before anything trains.

The file is validated (`openft.data.validate`), then every valid example is rendered with the
real tokenizer and chat template of the model that will train, through the trainer's own label
code (`openft.data.labels.render_stream`, the batched `render_example`), so the token counts,
truncation and `--show` view are what the trainer will see. The file is streamed, in bounded
memory, and rendered in batches (speed: `bench/README.md`). Then come the resolved
hyperparameters, the billed tokens, OpenAI's price for them and the ETA on this machine
(`openft.runner.throughput`).

`--json` prints one object; its keys are stable (other tools read it):

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
                "segments": [{"text": str, "trained": bool, "special": bool}]}]}  # --show only
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
"""

from __future__ import annotations

import gc
import itertools
import json
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from openft.cli.options import DEFAULT_DATA_DIR, DataDir
from openft.cli.output import duration, fail
from openft.data.hyperparams import resolve_hyperparameters, validate_requested_hyperparameters
from openft.data.labels import IGNORE_INDEX, RenderedExample, render_stream
from openft.data.pricing import price_per_1k_tokens, training_cost_usd
from openft.data.stats import TokenStats, TokenTally
from openft.data.validate import DataIssue, ValidationReport, check_example_count, iter_chat_jsonl
from openft.runner import throughput
from openft.settings import BUNDLED_MODEL, OPENAI_ALIASES, Settings
from openft.trainer.spec import MAX_LENGTH

app = typer.Typer(help="Check training data before it trains.", no_args_is_help=True)

REFERENCE_PRICE_MODEL = "gpt-3.5-turbo"
MAX_ISSUES_SHOWN = 50  # per list, in the text view; --json has them all
TRAINED_BRACKETS = ("[[", "]]")  # marks trained text where the terminal shows no colour


@app.command()
def check(
    file: Annotated[Path, typer.Argument(help="Training data: chat JSONL, one example per line.")],
    model: Annotated[
        str | None,
        typer.Option(
            help="Model to check for: a model in the store, or an OpenAI name (priced as that model, "
            "tokenized with the default base). Default: the configured base model."
        ),
    ] = None,
    validation: Annotated[Path | None, typer.Option(help="Validation data, checked the same way.")] = None,
    epochs: Annotated[int | None, typer.Option(help="n_epochs (default: auto, from the number of examples).")] = None,
    batch_size: Annotated[int | None, typer.Option(help="batch_size (default: auto).")] = None,
    show: Annotated[
        int, typer.Option(min=0, help="Render this many examples as the trainer sees them, trained tokens marked.")
    ] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object instead of the report.")] = False,
    data_dir: DataDir = DEFAULT_DATA_DIR,
) -> None:
    """Check a fine-tuning file: errors with line numbers, token statistics from the model's own
    tokenizer and chat template, auto hyperparameters, OpenAI's price and the local ETA.

    Exits 1 when the file has any error (fewer than 10 examples included), 0 otherwise.

    Example usage:

        openft data check train.jsonl
        openft data check train.jsonl --model gpt-4o-mini --validation valid.jsonl --epochs 3
        openft data check train.jsonl --show 2
        openft data check train.jsonl --json | jq .cost
    """
    settings = Settings(data_dir=data_dir)
    requested = {"n_epochs": epochs, "batch_size": batch_size}
    if invalid := validate_requested_hyperparameters({k: v for k, v in requested.items() if v is not None}):
        param, message = invalid
        fail(f"{'--epochs' if param.endswith('n_epochs') else '--batch-size'}: {message}")
    target = resolve_model(settings, model)
    tokenizer = _load_tokenizer(target.path)

    training = check_file(tokenizer, file, keep=show)
    if problem := check_example_count(training.stats.examples if training.stats else 0):
        training.errors.append(problem)
    valid = check_file(tokenizer, validation) if validation else None
    report = build_report(settings, target, training, valid, requested)
    if show:
        report["shown"] = [
            {"line": line, "truncated": r.truncated, "segments": segments(tokenizer, r)}
            for r, line in zip(training.rendered[:show], training.lines[:show])
        ]

    if as_json:
        typer.echo(json.dumps(report, indent=2))
    else:
        print_report(Console(), report)
    raise typer.Exit(0 if report["ok"] else 1)


# ---------------------------------------------------------------------------------------------
# checking


@dataclass
class FileCheck:
    file: Path
    errors: list[DataIssue]
    warnings: list[DataIssue]
    rendered: list[RenderedExample] = field(default_factory=list)  # the first `keep` (check_file)
    lines: list[int] = field(default_factory=list)  # the file line of each of those
    stats: TokenStats | None = None

    def to_dict(self) -> dict:
        return {
            "file": str(self.file),
            "errors": [asdict(issue) for issue in self.errors],
            "warnings": [asdict(issue) for issue in self.warnings],
            "stats": self.stats.to_dict() if self.stats else None,
        }


def check_file(tokenizer, path: Path, keep: int = 0) -> FileCheck:
    """Validate `path`, then render each valid example exactly as the trainer will, keeping the
    first `keep` rendered examples (for --show) and, of the rest, only counts.

    The file is streamed (`iter_chat_jsonl`, `render_stream`): memory stays bounded whatever its
    size.
    """
    report = ValidationReport()
    result = FileCheck(path, report.errors, [])
    tally = TokenTally()
    too_long = []
    pending: deque[tuple[int, int]] = deque()  # (line, messages) of the examples being rendered

    def examples(handle) -> Iterator[dict]:
        for line, example in iter_chat_jsonl(handle, report):
            pending.append((line, len(example["messages"])))
            yield example

    try:
        handle = open(path, "rb")
    except OSError as e:
        fail(f"Cannot read {path}: {e.strerror}")
    with handle, _fewer_collections():
        for rendered in render_stream(tokenizer, examples(handle), MAX_LENGTH):
            line, messages = pending.popleft()
            if isinstance(rendered, Exception):
                detail = f"Line {line}: the chat template cannot render this example: {rendered}"
                result.errors.append(DataIssue(line, "template_error", detail))
                continue
            if rendered.truncated:
                too_long.append(_too_long(line, rendered))
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


def _too_long(line: int, rendered: RenderedExample) -> DataIssue:
    detail = (
        f"Line {line}: longer than the {MAX_LENGTH}-token context; it will be truncated to its "
        f"first {MAX_LENGTH} tokens (as OpenAI does). Shorten or split it to silence this warning"
    )
    if all(label == IGNORE_INDEX for label in rendered.labels[1:]):
        detail += "; no trained token is left, so the trainer will skip it"
    return DataIssue(line, "example_too_long", detail)


def build_report(
    settings: Settings, target: Target, training: FileCheck, valid: FileCheck | None, requested: dict
) -> dict:
    n_examples = training.stats.examples if training.stats else 0
    hyperparameters = resolve_hyperparameters(n_examples, requested)
    report = {
        "ok": not training.errors and not (valid and valid.errors),
        "model": target.model,
        "context_tokens": MAX_LENGTH,
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
    if throughput.cached(settings.data_dir, target.model) is None:
        typer.echo(f"Measuring this machine's training speed for {target.model} (once; seconds)…", err=True)
    speed = throughput.ensure_measured(settings.data_dir, target.model, target.path, settings.train_threads)
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
    path: Path
    price_model: str  # the OpenAI model whose price applies
    reference_price: bool  # `model` is not an OpenAI model: price_model is only a reference


def resolve_model(settings: Settings, requested: str | None) -> Target:
    """What `--model` means here. An OpenAI name (an alias the server accepts, or any priced
    model, `ft:` fine-tunes of them included) tokenizes with the default base and is priced as
    itself; any other name tokenizes with itself and is priced as gpt-3.5-turbo, for reference."""
    name = requested or settings.default_base_model
    if name in OPENAI_ALIASES or price_per_1k_tokens(name) is not None:
        base = settings.default_base_model
        return Target(base, model_in_store(settings, base), name, reference_price=False)
    if name.startswith("ft:"):  # ft:<base>:<org>:<suffix>:<id> tokenizes as its base
        name = name.split(":")[1]
    return Target(name, model_in_store(settings, name), REFERENCE_PRICE_MODEL, reference_price=True)


def model_in_store(settings: Settings, name: str) -> Path:
    """The model's folder, importing the bundled model first if this data dir has never had it."""
    from openft.models.bundled import BundledModelMissing, is_imported

    path = settings.models_dir / name
    if is_imported(settings.models_dir, name):
        return path
    if name != BUNDLED_MODEL:
        fail(f"Model {name!r} is not in the model store ({path}); pass --model {BUNDLED_MODEL} or a model there")
    from openft.models.store import ensure_bundled_model
    from openft.store.db import Database

    typer.echo(f"Importing the bundled {name} into {settings.models_dir} (once)…", err=True)
    try:
        ensure_bundled_model(settings, Database(settings))
    except BundledModelMissing as e:
        fail(str(e))
    return path


def _load_tokenizer(model_dir: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(model_dir)


# ---------------------------------------------------------------------------------------------
# output


def segments(tokenizer, rendered: RenderedExample) -> list[dict]:
    """The rendered example as runs of tokens that are alike (trained or not, special or not),
    each decoded from the very token ids the trainer gets."""
    special = set(tokenizer.all_special_ids)
    tokens = zip(rendered.input_ids, rendered.labels)
    runs = itertools.groupby(tokens, key=lambda t: (t[1] != IGNORE_INDEX, t[0] in special))
    return [
        {"text": tokenizer.decode([token for token, _ in run]), "trained": trained, "special": is_special}
        for (trained, is_special), run in runs
    ]


def print_report(console: Console, report: dict) -> None:
    console.print(
        f"Checked with [bold]{report['model']}[/]'s tokenizer and chat template "
        f"(context {report['context_tokens']:,} tokens)."
    )
    for key in ("training", "validation"):
        if report[key]:
            _print_file(console, key, report[key])
    if report["training"]["stats"]:
        _print_costs(console, report)
    for i, shown in enumerate(report.get("shown", []), start=1):
        _print_example(console, i, shown)
    console.print("[bold green]OK[/]" if report["ok"] else "[bold red]Errors found: fix them before training.[/]")


def _print_file(console: Console, which: str, checked: dict) -> None:
    console.print(f"\n[bold]{which.capitalize()} file[/] {checked['file']}")
    for title, issues, style in (("Errors", checked["errors"], "red"), ("Warnings", checked["warnings"], "yellow")):
        if not issues:
            continue
        console.print(f"[{style}]{title} ({len(issues)})[/]")
        for issue in issues[:MAX_ISSUES_SHOWN]:
            line = Text("  ")
            line.append(issue["code"], style=f"bold {style}")
            line.append(f"  {issue['message']}")
            console.print(line, soft_wrap=True)
        if len(issues) > MAX_ISSUES_SHOWN:
            console.print(f"  … and {len(issues) - MAX_ISSUES_SHOWN} more (--json lists them all)")
    stats = checked["stats"]
    if not stats:
        return
    console.print("\n[bold]Statistics[/]")
    table = Table(box=None, show_header=False, padding=(0, 2))
    table.add_row("examples", f"{stats['examples']:,}")
    table.add_row("messages per example", _distribution(stats["messages_per_example"]))
    table.add_row("tokens per example", _distribution(stats["tokens_per_example"]))
    table.add_row("tokens (one epoch)", f"{stats['tokens']:,}")
    share = stats["trained_tokens"] / stats["tokens"]
    table.add_row("trained tokens", f"{stats['trained_tokens']:,} ({share:.0%}: assistant replies with weight 1)")
    truncated = stats["truncated_lines"]
    lines = f" (lines {', '.join(map(str, truncated[:20]))}{', …' if len(truncated) > 20 else ''})" if truncated else ""
    table.add_row("examples truncated", f"{len(truncated):,}{lines}")
    console.print(table)


def _print_costs(console: Console, report: dict) -> None:
    hp, cost, eta = report["hyperparameters"], report["cost"], report["eta"]
    table = Table(box=None, show_header=False, padding=(0, 2))
    table.add_row(
        "hyperparameters",
        f"n_epochs {hp['n_epochs']}, batch_size {hp['batch_size']}, "
        f"learning_rate_multiplier {hp['learning_rate_multiplier']:g}",
    )
    tokens = report["training"]["stats"]["tokens"]
    table.add_row("billed tokens", f"{report['billed_tokens']:,} ({tokens:,} tokens × {hp['n_epochs']} epochs)")
    note = f" (for reference: {report['model']} is not an OpenAI model)" if cost["reference"] else ""
    table.add_row(
        "cost at OpenAI",
        f"${_money(cost['usd'])} at {cost['model']}'s ${cost['usd_per_1k_tokens']:g} / 1K tokens{note}",
    )
    table.add_row(
        "time here",
        f"~{duration(eta['seconds'])} at {eta['tokens_per_second']:,.0f} tokens/s "
        f"({'measured from finished jobs' if eta['source'] == 'jobs' else 'benchmark; finished jobs refine it'})",
    )
    console.print("\n[bold]Training[/]")
    console.print(table)


def _print_example(console: Console, i: int, shown: dict) -> None:
    plain = console.no_color or console.color_system is None
    legend = "trained tokens in [[ ]]" if plain else "trained tokens in green"
    console.print(f"\n[bold]Example {i}[/] (line {shown['line']}; {legend})")
    text = Text()
    for trained, run in itertools.groupby(shown["segments"], key=lambda segment: segment["trained"]):
        text.append(TRAINED_BRACKETS[0] if trained and plain else "")
        for segment in run:
            style = ("bold green " if trained else "") + ("italic" if segment["special"] else "")
            text.append(segment["text"], style=style.strip() or None)
        text.append(TRAINED_BRACKETS[1] if trained and plain else "")
    console.print(text, soft_wrap=True)
    if shown["truncated"]:
        console.print(f"[yellow]… truncated here, at the {MAX_LENGTH}-token context[/]")


def _distribution(d: dict) -> str:
    return ", ".join(
        f"{key} {value:,.0f}" if value == int(value) else f"{key} {value:,.1f}" for key, value in d.items()
    )


def _money(usd: float) -> str:
    return f"{usd:,.2f}" if usd >= 0.01 else f"{usd:.4f}"
