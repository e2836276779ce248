"""Bring your own model, end to end, the ways tests/test_families.py does not: a base added from a
hub id through an offline Hugging Face cache and one through an alias, checked with `openft data
check --model`, fine-tuned through the API with the official client (one job naming the alias),
and chatted with, streamed and not. (Every family's add, fine-tune and serving is in
tests/test_families.py.)

And the fleet of docs/deploy.md started at once on a fresh data dir: `openft serve --no-worker`
and two `openft worker`s each add the bundled model on first start, once between them."""

import json

import pytest
from typer.testing import CliRunner

from openft.cli.app import app
from openft.runner import throughput
from tests.helpers import TEN_EXAMPLES, LiveServer, WorkerProcess, hub_cache, new_data_dir, run_openft, watch

runner = CliRunner()

# the name each base is added as, and the name its job asks for
JOBS = {
    "llama": ("llama", "support-llama"),  # through the alias it was added with
    "qwen3": ("tiny-qwen3", "tiny-qwen3"),  # from the hub id openft-tests/tiny-qwen3
}
QUESTION = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Where is the treasure?"}]


def openft(data_dir, *args):
    return runner.invoke(app, [*map(str, args), "--data-dir", str(data_dir)])


@pytest.fixture
def server(tmp_path, model_store):
    server = LiveServer(new_data_dir(tmp_path / "server", model_store))
    yield server
    server.stop()


def test_a_hub_id_and_an_alias_are_added_checked_fine_tuned_and_served(server, tiny_models, tmp_path):
    data_dir = server.data_dir
    # ---- add
    assert openft(data_dir, "models", "add", tiny_models["llama"], "--alias", "support-llama").exit_code == 0
    hub_cache(tmp_path / "hf", "openft-tests/tiny-qwen3", tiny_models["qwen3"])
    env = {"HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(tmp_path / "hf")}
    hub = run_openft("models", "add", "openft-tests/tiny-qwen3", "--data-dir", data_dir, env=env)
    assert hub.returncode == 0, hub.stderr

    # ---- check: the data check renders the file with each model's own template
    training = tmp_path / "ten.jsonl"
    training.write_bytes(TEN_EXAMPLES)
    for name, requested in JOBS.values():
        throughput.record_job_throughput(data_dir, name, tokens=1000, seconds=10.0)  # no benchmark here
        checked = openft(data_dir, "data", "check", training, "--model", requested, "--json", "--show", "1")
        report = json.loads(checked.stdout)
        assert checked.exit_code == 0 and report["ok"] and report["model"] == name, checked.output
        trained = "".join(s["text"] for s in report["shown"][0]["segments"] if s["trained"])
        assert "Ahoy" in trained

    # ---- fine-tune, both queued at once
    client = server.client()
    uploaded = client.files.create(file=("ten.jsonl", TEN_EXAMPLES), purpose="fine-tune")
    jobs = {
        family: client.fine_tuning.jobs.create(
            training_file=uploaded.id, model=requested, hyperparameters={"n_epochs": 1, "batch_size": 5}, seed=3
        )
        for family, (_, requested) in JOBS.items()
    }
    for family, job in jobs.items():
        finished = watch(client, job.id).job
        assert finished.status == "succeeded", (family, finished.error)
        assert finished.fine_tuned_model.startswith(f"ft:{JOBS[family][1]}:personal::")
        whole = client.chat.completions.create(
            model=finished.fine_tuned_model, messages=QUESTION, max_tokens=6, temperature=0
        )
        stream = client.chat.completions.create(
            model=finished.fine_tuned_model, messages=QUESTION, max_tokens=6, temperature=0, stream=True
        )
        joined = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
        assert joined == whole.choices[0].message.content


def test_the_fleet_starts_together_on_a_fresh_data_dir(tmp_path):
    """Today's crash: each process removed the others' half-imported model folder."""
    data_dir = tmp_path / "fresh"
    data_dir.mkdir()
    env = {"OPENFT_WORKER_POLL_SECONDS": "0.3", "OPENFT_TRAIN_THREADS": "1", "OPENFT_SERVE_THREADS": "1"}
    workers = [WorkerProcess(data_dir, env) for _ in range(2)]  # started, not waited for
    # started with them; it answers once the bundled model is in (a GGUF conversion on a busy CPU)
    server = LiveServer(data_dir, "--no-worker", env=env, ready_timeout=600)
    try:
        client = server.client()
        uploaded = client.files.create(file=("ten.jsonl", TEN_EXAMPLES), purpose="fine-tune")
        job = client.fine_tuning.jobs.create(
            training_file=uploaded.id, model="gpt-3.5-turbo", hyperparameters={"n_epochs": 1, "batch_size": 10}
        )
        assert watch(client, job.id).job.status == "succeeded"

        assert all(worker.process.poll() is None for worker in workers)
        assert [model.id for model in client.models.list().data].count("SmolLM2-135M-Instruct") == 1
        assert sorted(path.name for path in (data_dir / "models").iterdir() if not path.name.startswith(".")) == [
            "SmolLM2-135M-Instruct"
        ]
        assert not list((data_dir / "models").glob(".staging/*"))
    finally:
        server.stop()
        for worker in workers:
            worker.stop()
    for log in ("server.log", "worker.log"):
        assert "Traceback" not in (data_dir / log).read_text(), log
