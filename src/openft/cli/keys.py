"""`openft keys`: API keys and the organizations they act for."""

import time
from typing import Annotated

import typer

from openft.cli.options import DEFAULT_DATA_DIR, DataDir
from openft.cli.output import fail
from openft.errors import OpenFTError

app = typer.Typer(help="Manage API keys. Once a key exists, every /v1 request needs one.", no_args_is_help=True)


def _keys(data_dir):
    from openft.services.keys import KeyService
    from openft.settings import Settings
    from openft.store.db import Database

    settings = Settings(data_dir=data_dir)
    return KeyService(settings, Database(settings))


@app.command()
def create(
    org: Annotated[str, typer.Option("--org", help="The organization the key acts for (created if new).")],
    data_dir: DataDir = DEFAULT_DATA_DIR,
) -> None:
    """Create an API key for an organization and print it (once: only its hash is stored).

    The key goes to stdout, alone on its line; the rest goes to stderr.

    The organization's name is the `org` part of its fine-tuned model names. A key for the local
    organization ("personal") keeps what was created before keys existed.

    Example usage:

        openft keys create --org acme
        export OPENAI_API_KEY=$(openft keys create --org acme)
    """
    try:
        secret, row, org_row = _keys(data_dir).create(org)
    except OpenFTError as error:
        fail(error.message)
    typer.echo(secret)
    note = f"Created {row.id} for organization {org_row.name} ({org_row.id}). It is shown only this once."
    typer.echo(note, err=True)


@app.command("list")
def list_keys(data_dir: DataDir = DEFAULT_DATA_DIR) -> None:
    """List API keys (redacted), their organizations, and whether they are revoked.

    Example usage:

        openft keys list
    """
    rows = _keys(data_dir).list()
    if not rows:
        typer.echo("No API keys: the server accepts any request, as the local organization.", err=True)
    for key, org in rows:
        state = f"revoked {_date(key.revoked_at)}" if key.revoked_at else "active"
        typer.echo(f"{key.id}  {key.redacted}  {org.name} ({org.id})  created {_date(key.created_at)}  {state}")


@app.command()
def revoke(
    key_id: Annotated[str, typer.Argument(help="The key's id (key_…), from `openft keys list`.")],
    data_dir: DataDir = DEFAULT_DATA_DIR,
) -> None:
    """Revoke an API key: requests with it get 401 from then on.

    Revoking the last key does not open the server: requests still need a key.

    Example usage:

        openft keys revoke key_AbC123
    """
    try:
        _keys(data_dir).revoke(key_id)
    except OpenFTError as error:
        fail(error.message)
    typer.echo(f"Revoked {key_id}.")


def _date(seconds: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(seconds))
