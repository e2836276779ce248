"""A self-hosted service must not lose a job because a process died.

Kill -9 the trainer, then the whole server, in the middle of an epoch: the job resumes from its
last checkpoint (not from step 0), succeeds, and its story has every step exactly once.
"""

import signal
import time

from tests.helpers import DATA, LiveServer, new_data_dir, trainer_of, wait_for

FAST_LEASE = {"OPENFT_LEASE_SECONDS": "4"}
STEPS_PER_EPOCH = 5  # 20 examples at batch size 4


def start_job(client):
    training = client.files.create(file=(DATA / "ahoy.jsonl").open("rb"), purpose="fine-tune")
    job = client.fine_tuning.jobs.create(
        training_file=training.id, model="gpt-3.5-turbo", hyperparameters={"n_epochs": 3, "batch_size": 4}, seed=3
    )
    return training, job


def wait_until_mid_second_epoch(client, job_id: str) -> None:
    deadline = time.time() + 300
    while time.time() < deadline:
        steps = [
            e.data["step"] for e in client.fine_tuning.jobs.list_events(job_id, limit=5).data if e.type == "metrics"
        ]
        if steps and STEPS_PER_EPOCH + 1 <= max(steps) < 2 * STEPS_PER_EPOCH:
            return
        time.sleep(0.2)
    raise TimeoutError("the job never reached its second epoch")


def assert_whole_story(client, job, events_before_kill) -> None:
    assert job.status == "succeeded", job.error
    events = list(reversed(client.fine_tuning.jobs.list_events(job.id, limit=1000).data))
    steps = [e.data["step"] for e in events if e.type == "metrics"]
    assert steps == list(range(1, 3 * STEPS_PER_EPOCH + 1))
    ids = [e.id for e in events]
    assert len(ids) == len(set(ids))
    assert {e.id for e in events_before_kill} <= set(ids)
    messages = [e.message for e in events]
    assert "Fine-tuning job started again (attempt 2)" in messages
    # From the end of epoch 1, not from step 0.
    assert f"Resumed from the checkpoint at step {STEPS_PER_EPOCH}" in messages
    assert len(client.fine_tuning.jobs.checkpoints.list(job.id).data) == 3


def test_killed_trainer_resumes_from_its_checkpoint(tmp_path, model_store):
    server = LiveServer(new_data_dir(tmp_path / "data", model_store), env=FAST_LEASE)
    try:
        client = server.client()
        training, job = start_job(client)
        wait_until_mid_second_epoch(client, job.id)
        before = client.fine_tuning.jobs.list_events(job.id, limit=1000).data
        trainer_of(server).send_signal(signal.SIGKILL)
        job = wait_for(client, job.id)
        assert_whole_story(client, job, before)
        assert client.files.retrieve(training.id).id == training.id
    finally:
        server.stop()


def test_killed_server_resumes_the_job_after_restart(tmp_path, model_store):
    data_dir = new_data_dir(tmp_path / "data", model_store)
    server = LiveServer(data_dir, env=FAST_LEASE)
    client = server.client()
    training, job = start_job(client)
    wait_until_mid_second_epoch(client, job.id)
    before = client.fine_tuning.jobs.list_events(job.id, limit=1000).data
    trainer = trainer_of(server)
    server.process.send_signal(signal.SIGKILL)
    server.process.wait()
    trainer.wait(timeout=10)  # the trainer dies with its worker
    server.log.close()

    restarted = LiveServer(data_dir, env=FAST_LEASE)
    try:
        client = restarted.client()
        job = wait_for(client, job.id)
        assert_whole_story(client, job, before)
        assert client.files.retrieve(training.id).id == training.id
    finally:
        restarted.stop()
