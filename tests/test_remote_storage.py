"""A fine-tune whose artifacts never touch the data dir: with the storage on fsspec's `memory://`
(an object store as far as openft can tell: nothing in it has a local path), the upload lands
there, the worker fetches the training file for the trainer and pushes the checkpoints and the
adapter, and the server fetches the adapter into its cache to answer a chat."""

import json

from openft.models.store import ensure_bundled_model
from openft.runner.worker import Worker
from openft.server.app import create_app
from openft.settings import Settings
from openft.storage import Storage
from openft.store.db import Database
from tests.helpers import DATA, in_process_client


def test_a_job_trains_and_serves_from_a_remote_storage(tmp_path, data_dir):
    url = f"memory://openft-test/{tmp_path.name}"
    settings = Settings(data_dir=data_dir, storage_url=url, train_threads=1, serve_threads=1)
    db = Database(settings)
    ensure_bundled_model(settings, db)
    client = in_process_client(create_app(settings, run_worker=False))
    storage = Storage(url)

    ten = b"".join((DATA / "ahoy.jsonl").read_bytes().splitlines(keepends=True)[:10])
    training = client.files.create(file=("ahoy.jsonl", ten), purpose="fine-tune")
    job = client.fine_tuning.jobs.create(
        training_file=training.id, model="gpt-3.5-turbo", hyperparameters={"n_epochs": 2, "batch_size": 10}, seed=1
    )
    assert Worker(settings, db).run_once()
    job = client.fine_tuning.jobs.retrieve(job.id)
    assert job.status == "succeeded", job.error

    # The trainer read a copy fetched into the job's folder; the outputs went to the storage.
    assert (data_dir / "jobs" / job.id / "files" / training.id).read_bytes() == ten
    assert storage.exists(f"adapters/{job.id}/adapter_model.safetensors")
    assert storage.exists(f"checkpoints/{job.id}/step-1/trainer_state.pt")
    assert storage.exists(f"checkpoints/{job.id}/step-1/adapter/adapter_model.safetensors")
    for kept_elsewhere in ("files", "adapters", "checkpoints"):
        assert not (data_dir / kept_elsewhere).exists()
    checkpoint = client.fine_tuning.jobs.checkpoints.list(job.id).data[-1]  # step 1's, servable
    assert checkpoint.step_number == 1

    for model in (job.fine_tuned_model, checkpoint.fine_tuned_model_checkpoint):
        reply = client.chat.completions.create(
            model=model, messages=[{"role": "user", "content": "Hi"}], max_tokens=3, temperature=0
        )
        assert reply.choices[0].message.content
    assert (data_dir / "cache" / "adapters" / job.id / "adapter_model.safetensors").exists()
    assert (data_dir / "cache" / "checkpoints" / job.id / "step-1" / "adapter").is_dir()
    config = json.loads((data_dir / "cache" / "adapters" / job.id / "adapter_config.json").read_text())
    assert config["r"] == 8
    storage.delete("")
