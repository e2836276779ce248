"""`openft orgs`: organizations, and which of them may use the upstream."""

import sys
from typing import Annotated

import typer

from openft.cli.options import DEFAULT_DATA_DIR, DataDir
from openft.cli.output import fail
from openft.errors import OpenFTError

app = typer.Typer(help="Manage organizations: which may relay to the upstream, and on which key.", no_args_is_help=True)


def _organizations(data_dir):
    from openft.services.organizations import OrganizationService
    from openft.settings import Settings
    from openft.store.db import Database

    settings = Settings(data_dir=data_dir)
    return OrganizationService(settings, Database(settings))


@app.command("list")
def list_orgs(data_dir: DataDir = DEFAULT_DATA_DIR) -> None:
    """List organizations, whether their requests may go to the upstream, and on whose key.

    Example usage:

        openft orgs list
    """
    for org in _organizations(data_dir).list():
        typer.echo(f"{org.name} ({org.id})  {_upstream(org)}")


@app.command()
def upstream(
    name: Annotated[str, typer.Argument(help="The organization (created if new, as `openft keys create` does).")],
    enable: Annotated[
        bool | None, typer.Option("--enable/--disable", help="Relay its requests to the upstream, or stop.")
    ] = None,
    key_stdin: Annotated[
        bool, typer.Option("--key-stdin", help="Read its own upstream key from stdin, used in place of the server's.")
    ] = False,
    clear_key: Annotated[bool, typer.Option("--clear-key", help="Use the server's upstream key again.")] = False,
    data_dir: DataDir = DEFAULT_DATA_DIR,
) -> None:
    """Switch relaying to the upstream on or off for an organization, and set its own upstream key.

    Relaying is off for every organization until switched on here (or by
    OPENFT_UPSTREAM_ORGANIZATIONS); then its requests for the names OPENFT_UPSTREAM_MODELS lists go
    to OPENFT_UPSTREAM_BASE_URL. Its own key, if set, is sent instead of OPENFT_UPSTREAM_API_KEY and
    is never shown to a client. The key is read from stdin, so it stays out of shell history.
    Without options, prints the organization's state.

    Example usage:

        openft orgs upstream acme --enable
        openft orgs upstream personal --enable          # the local organization, without keys
        echo "$ACME_OPENAI_KEY" | openft orgs upstream acme --key-stdin
        openft orgs upstream acme --disable
    """
    if key_stdin and clear_key:
        fail("--key-stdin and --clear-key contradict each other: give one.")
    api_key = sys.stdin.read() if key_stdin else None
    try:
        org = _organizations(data_dir).set_upstream(name, enabled=enable, api_key=api_key, clear_key=clear_key)
    except OpenFTError as error:
        fail(error.message)
    typer.echo(f"{org.name} ({org.id})  {_upstream(org)}")


def _upstream(org) -> str:
    if not org.upstream.enabled:
        return "upstream off"
    return "upstream on, " + ("its own key" if org.upstream.api_key else "the server's key")
