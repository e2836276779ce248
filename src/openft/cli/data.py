"""`openft data check`: everything about a training file before anything trains.

The check itself is `openft.data.check` (validation, the real tokenizer's statistics,
hyperparameters, price; its `--json` report is documented there, and its keys are stable). This
command adds what belongs to a terminal on this host: the flags, the model store (the base of
the model named; the bundled model is imported on first use), this machine's training speed for
the ETA (`openft.runner.throughput`, benchmarked once), and the printed report.
"""

from __future__ import annotations

import collections
import itertools
import json
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from openft.cli.options import DEFAULT_DATA_DIR, DataDir
from openft.cli.output import duration, fail
from openft.data.check import UnreadableFile, build_report, check_file, resolve_model, shown_examples
from openft.data.hyperparams import validate_requested_hyperparameters
from openft.data.validate import check_example_count
from openft.runner import throughput
from openft.settings import BUNDLED_MODEL, Settings
from openft.trainer.plan import GiB
from openft.trainer.spec import MAX_LENGTH

app = typer.Typer(help="Check training data before it trains.", no_args_is_help=True)


class Method(StrEnum):
    supervised = "supervised"
    dpo = "dpo"


MAX_ISSUES_SHOWN = 50  # per list, in the text view; --json has them all
TRAINED_BRACKETS = ("[[", "]]")  # marks trained text where the terminal shows no colour


@app.command()
def check(
    file: Annotated[
        Path, typer.Argument(help="Training data: chat JSONL, or DPO pairs (OpenAI's format), one example per line.")
    ],
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
    method: Annotated[
        Method | None,
        typer.Option(help="The job's method; a line of the other is an error. Default: the file's first example's."),
    ] = None,
    beta: Annotated[float | None, typer.Option(help="DPO's beta, in (0, 2] (default: auto).")] = None,
    show: Annotated[
        int, typer.Option(min=0, help="Render this many examples as the trainer sees them, trained tokens marked.")
    ] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object instead of the report.")] = False,
    data_dir: DataDir = DEFAULT_DATA_DIR,
) -> None:
    """Check a fine-tuning file: errors with line numbers, token statistics from the model's own
    tokenizer and chat template, auto hyperparameters, OpenAI's price, the local ETA, and the
    memory plan on this host (bf16 LoRA, gradient checkpointing or QLoRA, and its estimate).

    Exits 1 when the file has any error (fewer than 10 examples included), 0 otherwise.

    Example usage:

        openft data check train.jsonl
        openft data check train.jsonl --model gpt-4o-mini --validation valid.jsonl --epochs 3
        openft data check train.jsonl --show 2
        openft data check train.jsonl --json | jq .cost
        openft data check pairs.jsonl --method dpo --beta 0.2 --show 1
    """
    settings = Settings(data_dir=data_dir)
    requested = {"n_epochs": epochs, "batch_size": batch_size, "beta": beta}
    given = {key: value for key, value in requested.items() if value is not None}
    if beta is not None and method is Method.supervised:
        fail("--beta: only a DPO check takes it")
    if invalid := validate_requested_hyperparameters(given, "dpo" if beta is not None else "supervised"):
        param, message = invalid
        flags = {"n_epochs": "--epochs", "batch_size": "--batch-size", "beta": "--beta"}
        fail(f"{flags[param.removeprefix('hyperparameters.')]}: {message}")
    name = model or settings.default_base_model
    target = resolve_model(name, base_in_store(settings, name))
    model_path = settings.models_dir / target.model
    tokenizer = _load_tokenizer(model_path)

    try:
        training = check_file(tokenizer, file, MAX_LENGTH, keep=show, method=method and method.value)
        valid = check_file(tokenizer, validation, MAX_LENGTH, method=training.method) if validation else None
    except UnreadableFile as e:
        fail(str(e))
    if beta is not None and training.method != "dpo":
        fail(f"--beta: only a DPO check takes it, and {file} holds supervised examples")
    if problem := check_example_count(training.stats.examples if training.stats else 0):
        training.errors.append(problem)
    speed = training_speed(settings, target.model, model_path) if training.stats else None
    report = build_report(target, training, valid, given, MAX_LENGTH, speed)
    report["plan"] = memory_plan(settings, target.model, file, report) if training.stats else None
    if show:
        report["shown"] = shown_examples(tokenizer, training)

    if as_json:
        typer.echo(json.dumps(report, indent=2))
    else:
        print_report(Console(), report)
    raise typer.Exit(0 if report["ok"] else 1)


# ---------------------------------------------------------------------------------------------
# this host: the model store and the training speed


def base_in_store(settings: Settings, requested: str) -> str:
    """The base `requested` trains on (itself, an alias's base, a fine-tune's), in this host's
    model store; the bundled model is added first if this data dir has never had it."""
    from openft.errors import OpenFTError
    from openft.models.errors import ModelStoreError
    from openft.models.facts import read_facts
    from openft.models.store import ensure_bundled_model
    from openft.services.models import ModelService
    from openft.store.db import Database

    db = Database(settings)
    if settings.default_base_model == BUNDLED_MODEL:
        if read_facts(settings.models_dir / BUNDLED_MODEL) is None:
            typer.echo(f"Importing the bundled {BUNDLED_MODEL} into {settings.models_dir} (once)…", err=True)
        try:
            ensure_bundled_model(settings, db)
        except ModelStoreError as e:
            fail(str(e))
    models = ModelService(settings, db)
    try:  # this process owns the data dir: it may check with any organization's fine-tune
        base = models.resolve(models.owner(requested) or settings.organization_id, requested).base_model
    except OpenFTError:
        fail(f"Model {requested!r} is not in the model store: see `openft models list`, or `openft models add` it")
    if read_facts(settings.models_dir / base) is None:
        fail(f"Model {base!r} is registered but not on this host: add it here too with `openft models add`")
    return base


def training_speed(settings: Settings, model: str, model_path: Path) -> dict:
    """This machine's training speed for `model`, from finished jobs, or benchmarked once."""
    if throughput.cached(settings.data_dir, model) is None:
        typer.echo(f"Measuring this machine's training speed for {model} (once; seconds)…", err=True)
    return throughput.ensure_measured(settings.data_dir, model, model_path, settings.train_threads)


def memory_plan(settings: Settings, model: str, file: Path, report: dict) -> dict:
    """The memory plan a job on this file would train with on this host's device (the one its
    worker would advertise): what `openft.runner.planning` plans, with the same token bound."""
    from openft.runner.planning import LongestLine, job_plan
    from openft.runner.workers import this_device

    with open(file, "rb") as lines:
        measured = LongestLine(lines)
        for _ in measured:
            pass
    device = this_device(settings)
    n_examples = report["training"]["stats"]["examples"]
    planned = job_plan(
        settings, model, n_examples, measured.example_tokens, report["hyperparameters"], device, method=report["method"]
    )
    return {**planned.to_dict(), "fits": planned.fits, "description": planned.describe(), "device_name": device.name}


def _load_tokenizer(model_dir: Path):
    from transformers import AutoTokenizer

    from openft.models.facts import trusts_remote_code

    return AutoTokenizer.from_pretrained(model_dir, trust_remote_code=trusts_remote_code(model_dir))


# ---------------------------------------------------------------------------------------------
# output


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
    for side, stats in (checked["preference"] or {}).items():
        table.add_row(
            f"{side} ({'preferred' if side == 'chosen' else 'non-preferred'})",
            f"tokens per example {_distribution(stats['tokens_per_example'])}; trained {stats['trained_tokens']:,}",
        )
    console.print(table)


def _print_costs(console: Console, report: dict) -> None:
    hp, cost, eta = report["hyperparameters"], report["cost"], report["eta"]
    table = Table(box=None, show_header=False, padding=(0, 2))
    table.add_row(
        "hyperparameters",
        f"n_epochs {hp['n_epochs']}, batch_size {hp['batch_size']}, "
        f"learning_rate_multiplier {hp['learning_rate_multiplier']:g}"
        + (f", beta {hp['beta']:g} (DPO, with an SFT term on the preferred reply)" if "beta" in hp else ""),
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
    if plan := report.get("plan"):
        parts = ", ".join(f"{name} {n / GiB:.2f}" for name, n in plan["parts"].items())
        rows, tokens = plan["batch"]
        line = f"{plan['description']} ({parts} GiB; batches of {rows} x {tokens:,} tokens at most)"
        if not plan["fits"]:
            line = f"[red]does not fit: {plan['problem']}[/]"
        table.add_row(f"memory ({plan['device_name']})", line)
    console.print("\n[bold]Training[/]")
    console.print(table)


def _print_example(console: Console, i: int, shown: dict) -> None:
    plain = console.no_color or console.color_system is None
    pair = "rejected_segments" in shown
    what = "the compared replies" if pair else "trained tokens"
    legend = f"{what} in [[ ]]" if plain else f"{what} in green"
    console.print(f"\n[bold]Example {i}[/] (line {shown['line']}; {legend})")
    console.print(_segments_text(shown["segments"], plain), soft_wrap=True)
    if pair:  # the other side shares the prompt: only its reply is shown
        rejected = list(itertools.dropwhile(lambda segment: not segment["trained"], shown["rejected_segments"]))
        console.print("[bold]non-preferred reply instead:[/]")
        console.print(_segments_text(rejected, plain), soft_wrap=True)
    if shown["truncated"]:
        console.print(f"[yellow]… truncated here, at the {MAX_LENGTH}-token context[/]")


def _segments_text(segments: list[dict], plain: bool) -> Text:
    text = Text()
    for trained, run in itertools.groupby(segments, key=lambda segment: segment["trained"]):
        text.append(TRAINED_BRACKETS[0] if trained and plain else "")
        for segment in run:
            style = ("bold green " if trained else "") + ("italic" if segment["special"] else "")
            text.append(segment["text"], style=style.strip() or None)
        text.append(TRAINED_BRACKETS[1] if trained and plain else "")
    return text


def _distribution(d: dict) -> str:
    return ", ".join(
        f"{key} {value:,.0f}" if value == int(value) else f"{key} {value:,.1f}" for key, value in d.items()
    )


def _money(usd: float) -> str:
    return f"{usd:,.2f}" if usd >= 0.01 else f"{usd:.4f}"


# ---------------------------------------------------------------------------------------------
# openft data export: stored completions as training data


@app.command("export")
def export_command(
    model: Annotated[
        str | None, typer.Option(help="Only completions of this model (the name the client asked for).")
    ] = None,
    metadata: Annotated[
        list[str] | None, typer.Option(help="Only completions with this metadata, KEY=VALUE (repeatable).")
    ] = None,
    since: Annotated[
        str | None, typer.Option(help="Only completions created on or after this date (2026-11-01, or with a time).")
    ] = None,
    limit: Annotated[int | None, typer.Option(min=1, help="At most this many examples.")] = None,
    output: Annotated[Path, typer.Option("--output", "-o", help="The JSONL file to write.")] = Path("distilled.jsonl"),
    upload: Annotated[bool, typer.Option("--upload", help="Also upload it as a fine-tune file.")] = False,
    dpo_from: Annotated[
        str | None,
        typer.Option(
            help="Write preference pairs (DPO) instead: the better reply of each completion from "
            "'metadata:KEY' (a metadata value set with POST /v1/chat/completions/{id}) or from a JSONL file "
            'of {"completion_id": …, "preferred": …} lines; the stored reply is the non-preferred one.'
        ),
    ] = None,
    org: Annotated[str | None, typer.Option(help="The organization's name (default: the local one).")] = None,
    data_dir: DataDir = DEFAULT_DATA_DIR,
) -> None:
    """Write stored chat completions (`store: true`) as a training file: each one's input
    messages and tools with the stored reply (dropped streams and cut-off replies are skipped),
    checked as `openft data check` checks, and with --upload, uploaded for a fine-tuning job.

    Example usage:

        openft data export --model gpt-4o --metadata app=support --since 2026-11-01 -o support.jsonl
        openft data export --metadata app=support --upload
        openft data export --dpo-from metadata:preferred -o pairs.jsonl
        openft data export --dpo-from relabelled.jsonl -o pairs.jsonl
    """
    from datetime import datetime

    from openft.data.distill import jsonl, preferred_from_metadata, read_replacements
    from openft.services.distill import Selection, export
    from openft.services.stored_completions import StoredCompletions
    from openft.store.db import Database

    settings = Settings(data_dir=data_dir)
    db = Database(settings)
    organization_id = _organization_id(settings, db, org)
    pairs = dict(pair.split("=", 1) for pair in metadata or [] if "=" in pair)
    if len(pairs) != len(metadata or []):
        fail("--metadata takes KEY=VALUE")
    try:
        since_time = int(datetime.fromisoformat(since).timestamp()) if since else None
    except ValueError:
        fail(f"--since: {since!r} is not a date (2026-11-01, or 2026-11-01T12:00)")
    preferred = None
    if dpo_from and dpo_from.startswith("metadata:"):
        key = dpo_from.removeprefix("metadata:")
        preferred = lambda stored: preferred_from_metadata(stored, key)  # noqa: E731
    elif dpo_from:
        try:
            replacements = read_replacements(Path(dpo_from))
        except (OSError, ValueError) as e:
            fail(f"--dpo-from: {e}")
        preferred = lambda stored: replacements.get(stored.id)  # noqa: E731

    selection = Selection(model=model, metadata=pairs or None, since=since_time, limit=limit)
    result = export(StoredCompletions(settings, db), organization_id, selection, preferred)
    reasons = collections.Counter(skipped["reason"] for skipped in result.skipped)
    for reason, count in reasons.items():
        typer.echo(f"Skipped {count}: {reason}", err=True)
    if not result.lines:
        fail("No stored completion makes a training example (see `GET /v1/chat/completions` for what is stored).")
    output.write_bytes(jsonl(result.lines))
    typer.echo(f"Wrote {len(result.lines)} {'preference pairs' if preferred else 'examples'} to {output}")

    if not preferred:  # the data check reads supervised files
        name = settings.default_base_model
        tokenizer = _load_tokenizer(settings.models_dir / base_in_store(settings, name))
        training = check_file(tokenizer, output, MAX_LENGTH)
        if problem := check_example_count(training.stats.examples if training.stats else 0):
            training.errors.append(problem)
        for issue in training.errors[:MAX_ISSUES_SHOWN]:
            typer.echo(f"error {issue.code}: {issue.message}", err=True)
        if training.errors:
            fail(f"The data check found {len(training.errors)} errors in {output}: run `openft data check {output}`.")
        typer.echo(f"Data check: clean ({training.stats.examples} examples for {name}).")
    if upload:
        from openft.services.files import FileService

        with output.open("rb") as source:
            row = FileService(settings, db).create(organization_id, output.name, "fine-tune", source)
        typer.echo(f"Uploaded as {row.id}")


def _organization_id(settings: Settings, db, name: str | None) -> str:
    from sqlalchemy import select

    from openft.store.tables import OrganizationRow

    if name is None or name == settings.organization:
        return settings.organization_id
    with db.session() as session:
        found = session.scalar(select(OrganizationRow.id).where(OrganizationRow.name == name))
    if found is None:
        fail(f"--org: no organization named {name!r} (see `openft keys list`)")
    return found
