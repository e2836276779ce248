"""`openft keys`, `openft orgs` and the binding check of `openft serve`, through typer's
CliRunner. No server starts: uvicorn and the model import are replaced, and the refusal must come
before both."""

import pytest
import uvicorn
from sqlalchemy import select
from typer.testing import CliRunner

import openft.models.store
from openft.cli.app import app
from openft.services.keys import KeyService, hash_key
from openft.settings import Settings
from openft.store.db import Database
from openft.store.tables import OrganizationRow

runner = CliRunner()


@pytest.fixture
def data_dir(tmp_path):
    return tmp_path / "data"


@pytest.fixture
def no_server(monkeypatch):
    """Record uvicorn.run calls instead of serving; fail if the model import is reached."""
    calls = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kwargs: calls.append(kwargs))
    monkeypatch.setattr(openft.models.store, "prepare_bases", lambda settings, db: None)
    return calls


def keys(data_dir) -> KeyService:
    settings = Settings(data_dir=data_dir)
    return KeyService(settings, Database(settings))


def test_create_prints_the_key_once_and_stores_its_hash(data_dir):
    result = runner.invoke(app, ["keys", "create", "--org", "acme", "--data-dir", str(data_dir)])
    assert result.exit_code == 0, result.output
    key = result.stdout.strip()
    assert key.startswith("sk-openft-") and "\n" not in key
    assert "organization acme (org-" in result.stderr and "only this once" in result.stderr
    [(row, org)] = keys(data_dir).list()
    assert (row.key_hash, org.name) == (hash_key(key), "acme")
    assert keys(data_dir).authenticate(key).organization == "acme"


def test_list_and_revoke(data_dir):
    runner.invoke(app, ["keys", "create", "--org", "acme", "--data-dir", str(data_dir)])
    [(row, _)] = keys(data_dir).list()
    listed = runner.invoke(app, ["keys", "list", "--data-dir", str(data_dir)])
    assert listed.exit_code == 0 and row.id in listed.stdout and "acme" in listed.stdout and "active" in listed.stdout
    assert row.redacted in listed.stdout and row.redacted.startswith("sk-openft-…")
    revoked = runner.invoke(app, ["keys", "revoke", row.id, "--data-dir", str(data_dir)])
    assert revoked.exit_code == 0
    assert "revoked" in runner.invoke(app, ["keys", "list", "--data-dir", str(data_dir)]).stdout


def test_errors_are_one_line_and_exit_non_zero(data_dir):
    for args in (["keys", "create", "--org", "Not Valid"], ["keys", "revoke", "key_missing"]):
        result = runner.invoke(app, [*args, "--data-dir", str(data_dir)])
        assert result.exit_code == 1
        assert result.stderr.startswith("Error: ") and result.stderr.count("\n") == 1


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.10", "myhost.example"])
def test_serve_refuses_a_non_loopback_host_without_keys(data_dir, no_server, host, monkeypatch):
    monkeypatch.setattr(openft.models.store, "prepare_bases", pytest.fail)
    result = runner.invoke(app, ["serve", "--host", host, "--data-dir", str(data_dir)])
    assert result.exit_code == 1
    assert result.stderr.startswith(f"Error: refusing to listen on {host} without API keys")
    assert result.stderr.count("\n") == 1 and "--insecure" in result.stderr
    assert no_server == []


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "::1", "127.0.0.2"])
def test_serve_binds_loopback_without_keys(data_dir, no_server, host):
    result = runner.invoke(app, ["serve", "--host", host, "--data-dir", str(data_dir)])
    assert result.exit_code == 0, result.output
    assert [call["host"] for call in no_server] == [host]


def test_serve_binds_any_host_with_a_key_or_insecure(data_dir, no_server):
    assert runner.invoke(app, ["serve", "--host", "0.0.0.0", "--insecure", "--data-dir", str(data_dir)]).exit_code == 0
    keys(data_dir).create("acme")
    assert runner.invoke(app, ["serve", "--host", "0.0.0.0", "--data-dir", str(data_dir)]).exit_code == 0
    assert [call["host"] for call in no_server] == ["0.0.0.0", "0.0.0.0"]


def test_serve_binds_any_host_with_configured_keys(data_dir, no_server, monkeypatch):
    monkeypatch.setenv("OPENFT_API_KEYS", '["sk-from-env"]')
    assert runner.invoke(app, ["serve", "--host", "0.0.0.0", "--data-dir", str(data_dir)]).exit_code == 0


def test_orgs_upstream_switches_relaying_on_and_off_and_never_prints_the_key(data_dir, monkeypatch):
    def orgs(*args, stdin=None):
        return runner.invoke(app, ["orgs", *args, "--data-dir", str(data_dir)], input=stdin)

    listed = orgs("list")
    assert listed.exit_code == 0 and listed.stdout == "personal (org-openft)  upstream off\n"  # the local one, no row
    assert orgs("upstream", "acme", "--enable").stdout.endswith("upstream on, the server's key\n")
    secret = "sk-acme-own-0123456789"
    assert orgs("upstream", "acme", "--key-stdin", stdin=secret + "\n").stdout.endswith("upstream on, its own key\n")
    assert orgs("upstream", "personal", "--enable").stdout == "personal (org-openft)  upstream on, the server's key\n"
    listed = orgs("list").stdout
    assert "acme (org-" in listed and "its own key" in listed and secret not in listed
    with Database(Settings(data_dir=data_dir)).session() as session:
        assert session.scalar(select(OrganizationRow.upstream_api_key).where(OrganizationRow.name == "acme")) == secret

    assert orgs("upstream", "acme", "--disable", "--clear-key").stdout.endswith("upstream off\n")
    assert orgs("upstream", "acme").stdout.endswith("upstream off\n")
    monkeypatch.setenv("OPENFT_UPSTREAM_ORGANIZATIONS", '["acme"]')
    assert orgs("upstream", "acme").stdout.endswith("upstream on, the server's key\n")


def test_orgs_upstream_errors_are_one_line(data_dir):
    for args, stdin in (
        (["Not Valid", "--enable"], None),
        (["acme", "--key-stdin"], "\n"),
        (["acme", "--key-stdin", "--clear-key"], "k"),
    ):
        result = runner.invoke(app, ["orgs", "upstream", *args, "--data-dir", str(data_dir)], input=stdin)
        assert result.exit_code == 1 and result.stderr.startswith("Error: ") and result.stderr.count("\n") == 1
