"""The `openft` command line. Every command takes --data-dir (env OPENFT_DATA_DIR)."""

import importlib.util
import ipaddress
from pathlib import Path
from typing import Annotated, Literal

import typer

from openft.cli import data as data_commands
from openft.cli import evals as eval_commands
from openft.cli import export as export_commands
from openft.cli import keys as key_commands
from openft.cli import models as model_commands
from openft.cli import orgs as org_commands
from openft.cli.options import DEFAULT_DATA_DIR, DataDir
from openft.settings import Settings

app = typer.Typer(help="openft: a self-hosted, OpenAI-compatible fine-tuning service.", no_args_is_help=True)
app.add_typer(model_commands.app, name="models")
model_commands.app.command("export")(export_commands.export_command)
app.add_typer(data_commands.app, name="data")
app.add_typer(key_commands.app, name="keys")
app.add_typer(org_commands.app, name="orgs")
app.command("eval")(eval_commands.eval_command)


def settings_for(data_dir: Path) -> Settings:
    return Settings(data_dir=data_dir)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to any interface


@app.command()
def serve(
    data_dir: DataDir = DEFAULT_DATA_DIR,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    no_worker: Annotated[
        bool, typer.Option("--no-worker", help="Serve the API only; run `openft worker` apart.")
    ] = False,
    insecure: Annotated[
        bool, typer.Option("--insecure", help="Listen on a non-loopback --host even though no API key exists.")
    ] = False,
    engine: Annotated[
        Literal["openft", "hf", "vllm"] | None,
        typer.Option(help="Inference engine: openft (default), hf or vllm (GPU). Env: OPENFT_ENGINE."),
    ] = None,
) -> None:
    """Serve the OpenAI-compatible API (and run the job worker).

    On a fresh data dir the bundled SmolLM2-135M-Instruct is imported first (once), unless
    OPENFT_DEFAULT_BASE_MODEL names another base (which `openft models add` must have added).

    Without API keys anyone who reaches the port can use the server, so it listens only on
    loopback until `openft keys create` has made a key (or --insecure is given).

    Example usage:

        openft serve --port 8000 --data-dir ./.openft
        openft keys create --org acme && openft serve --host 0.0.0.0
        openft serve --engine vllm
    """
    from openft.services.keys import KeyService
    from openft.store.db import Database

    settings = settings_for(data_dir)
    if engine is not None:
        settings = Settings(data_dir=data_dir, engine=engine)
    if settings.engine == "vllm" and importlib.util.find_spec("vllm") is None:
        typer.echo("Error: the vllm engine needs vLLM on this host: pip install vllm (a GPU machine).", err=True)
        raise typer.Exit(1)
    if not insecure and not _is_loopback(host) and not KeyService(settings, Database(settings)).required():
        typer.echo(
            f"Error: refusing to listen on {host} without API keys: anyone who can reach it could use this server. "
            "Create a key with `openft keys create --org NAME`, or pass --insecure.",
            err=True,
        )
        raise typer.Exit(1)

    import uvicorn

    from openft.server.app import create_app

    _prepare_bases(settings, Database(settings))
    if settings.upstream_base_url:
        from openft.services.upstream import shown_url

        listed = ", ".join(settings.upstream_models) or "none: set OPENFT_UPSTREAM_MODELS"
        typer.echo(
            f"Chat models this server does not serve go to the upstream at {shown_url(settings.upstream_base_url)} "
            f"if OPENFT_UPSTREAM_MODELS lists them ({listed}), for the organizations relaying is on for "
            f"(`openft orgs list`); the OpenAI names it lists no longer mean {settings.default_base_model} for them.",
            err=True,
        )
    uvicorn.run(create_app(settings, run_worker=not no_worker), host=host, port=port, log_level="warning")


@app.command()
def worker(data_dir: DataDir = DEFAULT_DATA_DIR) -> None:
    """Run a job worker alone (next to `openft serve --no-worker`), and an exporter beside it.

    Example usage:

        openft worker --data-dir ./.openft
    """
    import signal
    import threading

    from openft.runner.exporter import Exporter
    from openft.runner.worker import Worker
    from openft.store.db import Database

    settings = settings_for(data_dir)
    db = Database(settings)
    _prepare_bases(settings, db)
    # Ctrl-C and SIGTERM ask the loop to stop (its job goes back to the queue, its row is
    # removed): an exception raised wherever the signal lands could leave a database connection
    # or lock half-used, and the cleanup then hung on it.
    stop = threading.Event()
    for stop_signal in (signal.SIGINT, signal.SIGTERM):
        signal.signal(stop_signal, lambda *_: stop.set())
    exporter = threading.Thread(target=Exporter(settings, db).run_forever, args=(stop,), name="openft-exporter")
    exporter.start()
    Worker(settings, db).run_forever(stop)
    exporter.join()


@app.command()
def demo(
    data_dir: DataDir = DEFAULT_DATA_DIR,
    port: Annotated[int, typer.Option(help="Port for the demo server.")] = 8000,
) -> None:
    """Run the seed workflow end to end: start a server, upload the Marv examples, fine-tune,
    and compare the base and fine-tuned answers.

    Example usage:

        openft demo --port 8000
    """
    from openft.cli.demo import run_demo

    raise typer.Exit(run_demo(data_dir, port))


def _prepare_bases(settings: Settings, db) -> None:
    """The bases the settings name are ready before serving or training: the bundled one added
    on first start, each other one registered already (or a one-line error)."""
    from openft.models import store
    from openft.models.errors import ModelStoreError

    try:
        store.prepare_bases(settings, db)
    except ModelStoreError as e:
        typer.echo(f"Error: {e}", err=True)
        raise typer.Exit(1) from None


def main() -> None:
    app()
