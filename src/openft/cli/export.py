"""`openft models export`: a model out of openft, as files other tools load.

On `--data-dir` by default, in an export process of its own (as the server's exporters run it),
in one of the host's export slots; with `--base-url` a running server queues the export, and the
archive it sends once the export is done is unpacked here. Either way the output folder appears
whole, or not at all.
"""

from __future__ import annotations

import shutil
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Annotated

import httpx
import typer

from openft.cli.options import DEFAULT_DATA_DIR, DataDir
from openft.cli.output import fail
from openft.protocol.exports import Format, Quantization

POLL_SECONDS = 1.0  # how often `--base-url` asks whether the server's export is done


def export_command(
    model: Annotated[str, typer.Argument(help="An ft: model, a checkpoint (ft:…:ckpt-step-N or ftckpt_…), or a base.")],
    format: Annotated[Format, typer.Option("--format", help="peft (the adapter), merged (transformers) or gguf.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="The folder to create (it must not exist).")],
    quantization: Annotated[
        Quantization | None, typer.Option(help="gguf only: the weights' type (default f16).")
    ] = None,
    base_url: Annotated[
        str | None, typer.Option(help="A running openft server (http://host:port/v1) to export from.")
    ] = None,
    api_key: Annotated[str, typer.Option(envvar="OPENAI_API_KEY", help="Key for --base-url.")] = "sk-openft",
    data_dir: DataDir = DEFAULT_DATA_DIR,
) -> None:
    """Export a fine-tune, a checkpoint or a base model into the folder OUTPUT:

    peft: the LoRA adapter as peft writes it, a README model card and training_config.json;
    merged: the base with the adapter merged, a transformers folder in the base's dtype;
    gguf: one GGUF file (tokenizer and chat template inside) and an Ollama Modelfile.

    Example usage:

        openft models export ft:gpt-3.5-turbo:personal:marv:AbCd1234 --format gguf -o marv
        ollama create marv -f marv/Modelfile && ollama run marv
        openft models export ft:…:ckpt-step-40 --format peft -o marv-step-40
        openft models export ft:… --format gguf --quantization q8_0 -o marv-q8 --base-url http://127.0.0.1:8000/v1
    """
    if output.exists():
        fail(f"{output} already exists; choose another output path or remove it.")
    if base_url:
        _download(base_url, api_key, model, format, quantization, output)
    else:
        _export_here(data_dir, model, format, quantization, output)
    typer.echo(f"Exported {model} ({format}) to {output}")


def _export_here(data_dir: Path, model: str, format: str, quantization: str | None, output: Path) -> None:
    from openft.errors import OpenFTError
    from openft.services.exports import ExportService
    from openft.services.files import FileService
    from openft.services.models import ModelService
    from openft.settings import Settings
    from openft.store.db import Database

    settings = Settings(data_dir=data_dir)
    db = Database(settings)
    exports = ExportService(settings, db, ModelService(settings, db), FileService(settings, db))
    try:
        exports.export_to(exports.owner(model), model, format, quantization, output)
    except OpenFTError as error:
        fail(error.message)


def _download(base_url: str, api_key: str, model: str, format: str, quantization: str | None, output: Path) -> None:
    """Ask the server for the export, wait for it, stream its tar and unpack its one folder as
    `output`; the export is deleted from the server afterwards."""
    api = httpx.Client(base_url=base_url.rstrip("/"), headers={"Authorization": f"Bearer {api_key}"}, timeout=60)
    body = {"model": model, "format": format, **({"quantization": quantization} if quantization else {})}
    export = _answer(api.post("/openft/exports", json=body))
    try:
        while export["status"] in ("queued", "running"):
            time.sleep(POLL_SECONDS)
            export = _answer(api.get(f"/openft/exports/{export['id']}"))
        if export["status"] == "failed":
            fail(export["error"]["message"])
        _unpack(api, export["id"], output)
    finally:
        api.delete(f"/openft/exports/{export['id']}")


def _unpack(api: httpx.Client, export_id: str, output: Path) -> None:
    output.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=output.parent, prefix=f".{output.name}.", suffix=".partial"))
    try:
        with api.stream("GET", f"/openft/exports/{export_id}/content", timeout=None) as response:
            if response.status_code != 200:
                response.read()
                _answer(response)
            with tarfile.open(fileobj=_Reader(response.iter_bytes()), mode="r|") as archive:
                archive.extractall(staging, filter="data")
        (folder,) = staging.iterdir()
        folder.rename(output)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _answer(response: httpx.Response) -> dict:
    """The JSON of a successful response; else the server's error message, and exit 1."""
    if response.status_code != 200:
        fail(response.json().get("error", {}).get("message", response.text))
    return response.json()


class _Reader:
    """A file-like `read` over an iterator of byte chunks (what tarfile's stream mode reads)."""

    def __init__(self, chunks):
        self.chunks, self.buffer = chunks, b""

    def read(self, size: int) -> bytes:
        while len(self.buffer) < size:
            chunk = next(self.chunks, b"")
            if not chunk:
                break
            self.buffer += chunk
        out, self.buffer = self.buffer[:size], self.buffer[size:]
        return out
