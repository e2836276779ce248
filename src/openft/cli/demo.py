"""`openft demo`: the seed guide's workflow, end to end, against a real local server.

Start `openft serve`, upload the Marv examples with the official `openai` client, fine-tune,
follow the job's events, then ask the base and the fine-tuned model the same held-out question.
"""

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
from openai import OpenAI
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

SYSTEM = "Marv is a factual chatbot that is also sarcastic."
HELD_OUT_QUESTION = "What is the capital of Japan?"
TERMINAL = ("succeeded", "failed", "cancelled")

console = Console()


def run_demo(data_dir: Path, port: int, training_file: Path = Path("examples/marv.jsonl")) -> int:
    started = time.time()
    console.print(f"[bold]Starting openft serve[/] on 127.0.0.1:{port} (data in {data_dir})")
    with background_server(data_dir, port) as (base_url, _):
        ok = seed_workflow(OpenAI(base_url=base_url, api_key="sk-openft-demo"), training_file)
    console.print(f"Demo finished in {time.time() - started:.0f} s.")
    return 0 if ok else 1


@contextmanager
def background_server(data_dir: Path, port: int, quiet: bool = False) -> Iterator[tuple[str, subprocess.Popen]]:
    """`openft serve` in a child process for the duration of the block; yields its base URL and
    the process."""
    base_url = f"http://127.0.0.1:{port}/v1"
    output = subprocess.DEVNULL if quiet else None
    server = subprocess.Popen(
        [sys.executable, "-m", "openft", "serve", "--data-dir", str(data_dir), "--port", str(port)],
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        stdout=output,
        stderr=output,
    )
    try:
        wait_until_ready(base_url, server)
        yield base_url, server
    finally:
        server.terminate()
        server.wait(timeout=60)


def wait_until_ready(base_url: str, server: subprocess.Popen, timeout: float = 600) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"openft serve exited with code {server.returncode}")
        try:
            if httpx.get(f"{base_url}/models", timeout=2).status_code in (200, 401):  # 401: up, keys required
                return
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    raise SystemExit("openft serve did not start in time")


def seed_workflow(client: OpenAI, training_file: Path) -> bool:
    # Step 2: upload the training file.
    uploaded = client.files.create(file=training_file.open("rb"), purpose="fine-tune")
    console.print(f"Uploaded [cyan]{uploaded.filename}[/] as [bold]{uploaded.id}[/] ({uploaded.bytes} bytes)")

    # Step 3: create the fine-tuning job.
    job = client.fine_tuning.jobs.create(training_file=uploaded.id, model="gpt-3.5-turbo", suffix="marv")
    console.print(f"Created job [bold]{job.id}[/] ({job.status})")
    job = follow(client, job.id)
    if job.status != "succeeded":
        console.print(f"[red]Job {job.status}[/]: {job.error.message if job.error else ''}")
        return False
    console.print(f"[green]Fine-tuned model[/] [bold]{job.fine_tuned_model}[/] ({job.trained_tokens} trained tokens)")

    # Step 4: use the fine-tuned model, next to the base model.
    messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": HELD_OUT_QUESTION}]
    table = Table(title=f"Held-out question: {HELD_OUT_QUESTION}", show_lines=True)
    table.add_column("model")
    table.add_column("answer")
    for model in ("gpt-3.5-turbo", job.fine_tuned_model):
        completion = client.chat.completions.create(model=model, messages=messages, temperature=0, max_tokens=60)
        table.add_row(model, completion.choices[0].message.content)
    console.print(table)
    return True


def follow(client: OpenAI, job_id: str):
    """Print status changes and events as they happen, with a progress bar over training steps."""
    seen: set[str] = set()
    status = None
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console) as progress:
        task = progress.add_task("training", total=None)
        while True:
            job = client.fine_tuning.jobs.retrieve(job_id)
            if job.status != status:
                status = job.status
                progress.console.print(f"status: [bold]{status}[/]")
            events = client.fine_tuning.jobs.list_events(job_id, limit=100).data
            for event in reversed(events):
                if event.id in seen:
                    continue
                seen.add(event.id)
                if event.type == "metrics" and event.data:
                    progress.update(task, completed=event.data["step"], total=event.data["total_steps"])
                    progress.update(task, description=f"loss {event.data['train_loss']:.3f}")
                else:
                    progress.console.print(f"  [dim]{event.message}[/]")
            if status in TERMINAL:
                return job
            time.sleep(1)
