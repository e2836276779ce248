"""`openft eval`: did fine-tuning help? Held-out examples through four arms, side by side.

In process by default, on `--data-dir` (like `openft data check`): the files are stored there,
the model loads in this process, and the report is stored where `openft serve`'s dashboard and
`GET /v1/openft/evals` show it. With `--base-url` the running server does the work instead
(`POST /v1/openft/evals`), so the model it already has loaded answers.

`--json` prints the report as the API returns it (`openft.protocol.evals.Eval`).
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Annotated

import httpx
import typer
from rich.console import Console
from rich.table import Table

from openft.cli.options import DEFAULT_DATA_DIR, DataDir
from openft.cli.output import duration, fail
from openft.protocol.evals import MAX_SHOTS

METRICS = (  # (key, label, format)
    ("exact_match", "exact match", "{:.0%}"),
    ("similarity", "similarity", "{:.3f}"),
    ("json_valid", "valid JSON", "{:.0%}"),
    ("preferred_rate", "closer to preferred (DPO)", "{:.0%}"),
    ("schema_valid", "valid against the schema", "{:.0%}"),
    ("mean_output_tokens", "output tokens (mean)", "{:.1f}"),
    ("mean_prompt_tokens", "prompt tokens (mean)", "{:.1f}"),
    ("mean_latency_seconds", "latency here (s, mean)", "{:.2f}"),
    ("cost_per_1k_requests_usd", "OpenAI $ / 1K requests", "${:.4f}"),
    ("local_seconds_per_1k_requests", "time here / 1K requests", "{}"),
)


def eval_command(
    model: Annotated[str, typer.Option(help="The fine-tuned model (ft:…) to evaluate.")],
    file: Annotated[
        Path,
        typer.Option(
            help="Held-out chat JSONL (the last message of each line is the reference), or DPO pairs "
            "(the preferred output is; the report adds how often answers are closer to it than to the other)."
        ),
    ],
    train_file: Annotated[
        Path | None,
        typer.Option(help="File for the system message and few-shot examples. Default: the job's training file."),
    ] = None,
    shots: Annotated[int, typer.Option(min=0, max=MAX_SHOTS, help="Training examples in the few-shot arm.")] = 3,
    max_tokens: Annotated[int, typer.Option(min=1, help="The most tokens per answer.")] = 128,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    base_url: Annotated[
        str | None, typer.Option(help="A running openft server (http://host:port/v1) to run the eval on.")
    ] = None,
    api_key: Annotated[str, typer.Option(envvar="OPENAI_API_KEY", help="Key for --base-url.")] = "sk-openft",
    data_dir: DataDir = DEFAULT_DATA_DIR,
) -> None:
    """Compare a fine-tune with its base model on held-out examples, in four arms: the base model
    zero-shot and few-shot (both with the training system message), the fine-tune with the system
    message, and the fine-tune without it; on a JSON task, also the fine-tune held to the task's
    schema (structured outputs). Reports exact match, similarity to the reference, JSON validity
    and validity against the schema (for JSON answers), mean output and prompt tokens, latency,
    and OpenAI's projected price per 1K requests next to the time here. The report is stored:
    `openft serve` shows it.

    Exits 1 on any error.

    Example usage:

        openft eval --model ft:gpt-3.5-turbo:personal:marv:AbCd1234 --file heldout.jsonl
        openft eval --model ft:… --file heldout.jsonl --train-file train.jsonl --shots 5 --json
        openft eval --model ft:… --file heldout.jsonl --base-url http://127.0.0.1:8000/v1
    """
    params = {"model": model, "shots": shots, "max_tokens": max_tokens}
    if base_url:
        report = _remote(base_url, api_key, file, train_file, params)
    else:
        report = _in_process(data_dir, file, train_file, params)
    if as_json:
        typer.echo(json.dumps(report, indent=2))
    else:
        print_report(Console(), report)


def _in_process(data_dir: Path, file: Path, train_file: Path | None, params: dict) -> dict:
    from openft.errors import OpenFTError
    from openft.inference import make_engine
    from openft.models.errors import ModelStoreError
    from openft.models.store import prepare_bases
    from openft.protocol.evals import EvalCreateParams
    from openft.services.chat import ChatService
    from openft.services.completions import Completions
    from openft.services.eval_runner import EvalRunner
    from openft.services.evals import EvalService, eval_object
    from openft.services.evals_api import EvalsAPI
    from openft.services.files import FileService
    from openft.services.graders import GraderService
    from openft.services.models import ModelService
    from openft.services.organizations import OrganizationService
    from openft.services.relay import RelayPolicy
    from openft.services.stored_completions import StoredCompletions
    from openft.settings import Settings
    from openft.store.db import Database

    settings = Settings(data_dir=data_dir)
    db = Database(settings)
    try:
        prepare_bases(settings, db)
    except ModelStoreError as error:
        fail(str(error))
    files, models = FileService(settings, db), ModelService(settings, db)
    chat = ChatService(models, make_engine(settings), settings.default_max_tokens)
    stored = StoredCompletions(settings, db)
    relay = RelayPolicy(settings, models, OrganizationService(settings, db))
    graders = GraderService(settings, Completions(settings, chat, relay, stored.recorder, None), models)
    evals_api = EvalsAPI(db, files, models, stored, graders)
    runner = EvalRunner(settings, db, chat, graders)
    service = EvalService(db, files, models, chat, evals_api, runner)
    # This process owns the data dir: it acts for the organization that owns the fine-tune.
    organization_id = models.owner(params["model"]) or settings.organization_id
    try:
        params["file"] = _store(files, organization_id, file, "evals").id
        if train_file:
            params["training_file"] = _store(files, organization_id, train_file, "fine-tune").id
        row = asyncio.run(service.create(organization_id, EvalCreateParams(**params)))
    except OpenFTError as error:
        fail(error.message)
    return eval_object(row).model_dump(mode="json")


def _store(files, organization_id: str, path: Path, purpose: str):
    try:
        with path.open("rb") as handle:
            return files.create(organization_id, path.name, purpose, handle)
    except OSError as error:
        fail(f"Cannot read {path}: {error.strerror}")


def _remote(base_url: str, api_key: str, file: Path, train_file: Path | None, params: dict) -> dict:
    # No timeout on the eval itself: it answers when every example has gone through every arm.
    headers = {"Authorization": f"Bearer {api_key}"}
    with httpx.Client(base_url=base_url.rstrip("/"), headers=headers, timeout=None) as client:
        params["file"] = _upload(client, file, "evals")
        if train_file:
            params["training_file"] = _upload(client, train_file, "fine-tune")
        return _answer(client.post("/openft/evals", json=params))


def _upload(client: httpx.Client, path: Path, purpose: str) -> str:
    try:
        content = path.read_bytes()
    except OSError as error:
        fail(f"Cannot read {path}: {error.strerror}")
    return _answer(client.post("/files", files={"file": (path.name, content)}, data={"purpose": purpose}))["id"]


def _answer(response: httpx.Response) -> dict:
    try:
        body = response.json()
    except ValueError:
        body = {}
    if response.is_error:
        fail(body.get("error", {}).get("message") or f"HTTP {response.status_code} from {response.url}")
    return body


def print_report(console: Console, report: dict) -> None:
    console.print(
        f"[bold]{report['model']}[/] vs [bold]{report['base_model']}[/] on {len(report['examples'])} held-out "
        f"examples ({report['file']}; {report['shots']} shots from {report['training_file']}; eval {report['id']})"
    )
    table = Table(show_lines=False)
    table.add_column("metric")
    best = report["ranking"][0]
    for arm in report["arms"]:
        table.add_column(arm["title"] + (" ★" if arm["name"] == best else ""), justify="right")
    for key, label, fmt in METRICS:
        values = [arm["metrics"][key] for arm in report["arms"]]
        if all(value is None for value in values):
            continue
        cells = ["-" if value is None else fmt.format(value) for value in values]
        if key == "local_seconds_per_1k_requests":
            cells = [duration(value) for value in values]
        table.add_row(label, *cells)
    console.print(table)
    titles = {arm["name"]: arm["title"] for arm in report["arms"]}
    console.print("Ranking: " + " > ".join(titles[name] for name in report["ranking"]))
    prices = report["prices"]
    note = " (for reference: not an OpenAI model)" if prices["reference"] else ""
    console.print(
        f"[dim]Costs at OpenAI's {prices['model']} prices{note}, with token counts from the local tokenizer; "
        "time here is each arm's requests batched on this machine.[/]"
    )
