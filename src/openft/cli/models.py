"""`openft models`: the base models this data dir trains and serves (models/store.py)."""

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from openft.cli.options import DEFAULT_DATA_DIR, DataDir
from openft.cli.output import fail
from openft.settings import Settings

app = typer.Typer(help="Manage the model store: the base models openft trains and serves.", no_args_is_help=True)


def _store(data_dir: Path):
    from openft.store.db import Database

    settings = Settings(data_dir=data_dir)
    return settings, Database(settings)


@app.command()
def add(
    source: Annotated[str, typer.Argument(help="A Hugging Face model folder, a .gguf file, or a hub id (org/name).")],
    name: Annotated[
        str | None, typer.Option(help="The model's name (default: the folder's, file's or repo's).")
    ] = None,
    alias: Annotated[
        list[str] | None, typer.Option(help="Another name for it, such as gpt-4o-mini; repeat for more.")
    ] = None,
    chat_template: Annotated[
        Path | None, typer.Option(help="A Jinja chat template file to use instead of the tokenizer's.")
    ] = None,
    trust_remote_code: Annotated[
        bool, typer.Option("--trust-remote-code", help="Allow a model that needs its own Python code (auto_map).")
    ] = False,
    data_dir: DataDir = DEFAULT_DATA_DIR,
) -> None:
    """Add a base model: check that openft can train and serve it, and register it.

    A hub id is downloaded into the Hugging Face cache (resumable; HF_TOKEN for gated models);
    with HF_HUB_OFFLINE=1 it must be there already. A .gguf file is converted to safetensors.
    The model must load as a causal LM without running its own code (unless
    --trust-remote-code), and training must be able to label its chat template: a template whose
    prompts render the conversation otherwise than before a reply is refused (pass a fixed one
    with --chat-template).

    Example usage:

        openft models add Qwen/Qwen2.5-0.5B-Instruct --alias gpt-4o-mini
        openft models add ./my-llama --name llama-support
        openft models add ./mistral --chat-template mistral-fixed.jinja
        openft models add ~/models/phi-3-mini.Q4_1.gguf
    """
    from openft.models.errors import ModelStoreError
    from openft.models.store import add as add_model

    template = None
    if chat_template is not None:
        try:
            template = chat_template.read_text()
        except OSError as e:
            fail(f"Cannot read {chat_template}: {e.strerror}")
    settings, db = _store(data_dir)
    try:
        added = add_model(settings, db, source, name, tuple(alias or ()), trust_remote_code, template)
    except ModelStoreError as e:
        fail(str(e))
    except OSError as e:  # a full disk, a folder it may not read: nothing was kept
        fail(f"Adding {source} failed: {e}")
    for warning in added.warnings:
        typer.echo(f"Warning: {warning}", err=True)
    facts = added.facts
    state = "already in the store" if added.already else "added"
    typer.echo(
        f"{added.name} {state}: {facts.architecture}, {_count(facts.parameters)} parameters, "
        f"context {facts.context_length:,}, {facts.dtype}, {_bytes(facts.size_bytes)}."
    )


@app.command("list")
def list_models(data_dir: DataDir = DEFAULT_DATA_DIR) -> None:
    """List the base models and the names (aliases) that resolve to each.

    Example usage:

        openft models list
    """
    from openft.models.store import bases

    settings, db = _store(data_dir)
    rows = bases(settings, db)
    if not rows:
        typer.echo("No base models yet: `openft models import` adds the bundled one, `openft models add` others.")
        return
    table = Table(box=None, padding=(0, 2), pad_edge=False)
    for column in ("name", "architecture", "parameters", "context", "dtype", "size", "aliases"):
        table.add_column(column, justify="right" if column in ("parameters", "context", "size") else "left")
    for row, aliases in rows:
        default = " (default)" if row.id == settings.default_base_model else ""
        table.add_row(
            row.id + default,
            row.architecture or "?",
            _count(row.parameters) if row.parameters else "?",
            f"{row.context_length:,}" if row.context_length else "?",
            row.dtype or "?",
            _bytes(row.size_bytes) if row.size_bytes else "?",
            ", ".join(aliases),
        )
    Console(width=200).print(table)


@app.command()
def remove(
    name: Annotated[str, typer.Argument(help="A base model or an alias added with --alias.")],
    data_dir: DataDir = DEFAULT_DATA_DIR,
) -> None:
    """Remove a base model (its files, and its aliases) or an alias.

    Refused while a job that has not finished, or a fine-tune, depends on the base.

    Example usage:

        openft models remove Qwen2.5-0.5B-Instruct
        openft models remove gpt-4o-mini
    """
    from openft.models.errors import ModelStoreError
    from openft.models.store import remove as remove_model

    settings, db = _store(data_dir)
    try:
        kind = remove_model(settings, db, name)
    except ModelStoreError as e:
        fail(str(e))
    typer.echo(f"Removed the {kind} {name}.")


@app.command("import")
def import_model(data_dir: DataDir = DEFAULT_DATA_DIR) -> None:
    """Add the bundled SmolLM2-135M-Instruct (its GGUF, converted once) to the model store.

    `openft serve` and `openft worker` do this on their first start; this does it ahead of time.

    Example usage:

        openft models import --data-dir ./.openft
    """
    from openft.models.errors import ModelStoreError
    from openft.models.store import ensure_bundled_model

    settings, db = _store(data_dir)
    try:
        ensure_bundled_model(settings, db)
    except ModelStoreError as e:
        fail(str(e))
    typer.echo(f"Model store ready: {settings.models_dir.resolve()}")


def _count(n: int) -> str:
    for unit, size in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= size:
            return f"{n / size:.1f}{unit}" if n < 10 * size else f"{n / size:.0f}{unit}"
    return str(n)


def _bytes(n: int) -> str:
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} B"
