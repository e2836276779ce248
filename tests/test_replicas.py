"""Serving replicas: two `openft serve --no-worker` processes (behind whatever load balancer)
and one `openft worker`, each on its own data dir, sharing one PostgreSQL database and one
artifact storage. A file uploaded through one replica trains a job created through the other,
and the fine-tune the worker finishes is listed and answers on both."""

from tests.helpers import TEN_EXAMPLES, LiveServer, WorkerProcess, fleet_env, new_data_dir, wait_for


def test_a_new_fine_tune_is_servable_on_every_replica(postgres, tmp_path, model_store):
    env = fleet_env(postgres.new_database(), f"file://{tmp_path / 'shared-storage'}")
    replicas = []
    worker = None
    try:
        for i in range(2):
            replicas.append(LiveServer(new_data_dir(tmp_path / f"replica{i}", model_store), "--no-worker", env=env))
        worker = WorkerProcess(new_data_dir(tmp_path / "trainer-host", model_store), env)
        first, second = (replica.client() for replica in replicas)
        training = first.files.create(file=("ten.jsonl", TEN_EXAMPLES), purpose="fine-tune")
        job = second.fine_tuning.jobs.create(
            training_file=training.id,
            model="gpt-3.5-turbo",
            suffix="replicas",
            hyperparameters={"n_epochs": 1, "batch_size": 10},
        )
        job = wait_for(first, job.id, timeout=300)
        assert job.status == "succeeded", job.error

        answers = []
        for client in (first, second):
            assert job.fine_tuned_model in {model.id for model in client.models.list().data}
            assert client.models.retrieve(job.fine_tuned_model).owned_by == "personal"
            reply = client.chat.completions.create(
                model=job.fine_tuned_model,
                messages=[{"role": "user", "content": "What is the capital of Peru?"}],
                max_tokens=8,
                temperature=0,
            )
            answers.append(reply.choices[0].message.content)
        assert answers[0] and answers[0] == answers[1]  # the same adapter, from the shared storage
        for replica in replicas:
            assert not (replica.data_dir / "jobs").exists() and not (replica.data_dir / "adapters").exists()
    finally:
        for replica in replicas:
            replica.stop()
        if worker:
            worker.stop()
