"""The seed workflow against a live server: upload, fine-tune, chat with the `ft:` model.

The training set gives every reply a fixed opening ("Ahoy matey!") that the base model never
uses, so held-out prompts show whether the fine-tune really learned.
"""

import base64
import time
from concurrent.futures import ThreadPoolExecutor

import openai
import pytest
from openai.types import FileObject, Model

from tests.helpers import DATA, trainer_of, wait_for

MARK = "Ahoy matey!"
HELD_OUT = ["What is the capital of Italy?", "What color is a ripe tomato?", "How many eyes does a cat have?"]


def ask(client, model: str, question: str, max_tokens: int = 40, **kwargs):
    return client.chat.completions.create(
        model=model,
        messages=[{"role": "system", "content": "You are a helpful assistant."}, {"role": "user", "content": question}],
        temperature=0,
        max_tokens=max_tokens,
        **kwargs,
    )


@pytest.fixture(scope="module")
def fine_tune(ahoy_fine_tune):
    return ahoy_fine_tune  # conftest.py: shared with test_eval_workflow.py, so it trains once


def test_job_succeeds_with_openai_shapes(live_server, fine_tune):
    client = live_server.client()
    uploaded, job = fine_tune.uploaded, fine_tune.job
    assert isinstance(uploaded, FileObject)
    assert job.status == "succeeded", job.error
    assert fine_tune.statuses[-1] == "succeeded" and "running" in fine_tune.statuses
    assert job.fine_tuned_model.startswith("ft:gpt-3.5-turbo:personal:ahoy:")
    assert len(job.fine_tuned_model.split(":")[-1]) == 8
    assert job.trained_tokens > 0 and job.finished_at >= job.created_at
    assert isinstance(job.hyperparameters.n_epochs, int) and job.hyperparameters.n_epochs >= 1
    results = client.files.retrieve(job.result_files[0])
    assert (results.filename, results.purpose) == ("step_metrics.csv", "fine-tune-results")
    csv = base64.b64decode(client.files.content(results.id).content).decode().splitlines()
    assert csv[0] == "step,train_loss,train_accuracy,valid_loss,valid_mean_token_accuracy" and len(csv) > 2


def test_events_tell_the_story(live_server, fine_tune):
    client = live_server.client()
    job = fine_tune.job
    events = client.fine_tuning.jobs.list_events(job.id, limit=1000).data
    messages = [e.message for e in reversed(events)]
    assert messages[0] == f"Created fine-tuning job: {job.id}"
    assert "Files validated, moving job to queued state" in messages
    assert "Fine-tuning job started" in messages
    steps = [e for e in events if e.type == "metrics"]
    total = steps[0].data["total_steps"]
    assert len(steps) == total and steps[0].message.startswith(f"Step {total}/{total}: training loss=")
    assert f"New fine-tuned model created: {job.fine_tuned_model}" in messages
    assert messages[-1] == "The job has successfully completed"
    page = client.fine_tuning.jobs.list_events(job.id, limit=3)
    assert len(page.data) == 3 and page.has_more
    checkpoints = client.fine_tuning.jobs.checkpoints.list(job.id).data
    assert checkpoints and checkpoints[0].fine_tuned_model_checkpoint == job.fine_tuned_model
    earliest = checkpoints[-1]
    assert earliest.fine_tuned_model_checkpoint.endswith(f":ckpt-step-{earliest.step_number}")
    assert earliest.metrics.train_loss > 0
    # Like OpenAI's, every checkpoint is a model of its own that can be chatted with.
    reply = ask(client, earliest.fine_tuned_model_checkpoint, HELD_OUT[0], max_tokens=8)
    assert reply.model == earliest.fine_tuned_model_checkpoint and reply.choices[0].message.content


def test_fine_tuned_model_is_listed(live_server, fine_tune):
    client = live_server.client()
    job = fine_tune.job
    model = client.models.retrieve(job.fine_tuned_model)
    assert isinstance(model, Model) and model.owned_by == "personal"
    assert job.fine_tuned_model in {m.id for m in client.models.list().data}


def test_fine_tune_learned_the_behaviour_and_base_did_not(live_server, fine_tune):
    client = live_server.client()
    job = fine_tune.job
    for question in HELD_OUT:
        tuned = ask(client, job.fine_tuned_model, question).choices[0]
        base = ask(client, "gpt-3.5-turbo", question).choices[0]
        assert tuned.message.content.startswith(MARK), tuned.message.content
        assert MARK not in base.message.content
        # The end-of-turn token was trained: the fine-tune stops by itself.
        assert tuned.finish_reason == "stop"


def test_concurrent_requests_for_base_and_fine_tune_are_decoded_together_as_alone(float_path):
    """Requests sent at once share decode steps (rows of the base model and of the adapter in one
    forward pass, prompts of other lengths): each gets the greedy answer it gets alone, on both
    float paths. (How much faster batching is: bench/serve_bench.py.)"""
    client = float_path.server.client()
    job = float_path.fine_tune.job
    questions = [*HELD_OUT, "Tell me, in a few sentences, why the sea is salty and the rivers are not."]
    asks = [(model, question) for question in questions for model in ("gpt-3.5-turbo", job.fine_tuned_model)]
    alone = [ask(client, model, question).choices[0].message.content for model, question in asks]
    with ThreadPoolExecutor(len(asks)) as pool:
        together = list(pool.map(lambda a: ask(client, *a).choices[0].message.content, asks))
    assert together == alone


def test_streaming_matches_non_streaming(live_server, fine_tune):
    client = live_server.client()
    job = fine_tune.job
    whole = ask(client, job.fine_tuned_model, HELD_OUT[0])
    chunks = list(ask(client, job.fine_tuned_model, HELD_OUT[0], stream=True, stream_options={"include_usage": True}))
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == [whole.choices[0].finish_reason]
    assert chunks[-1].usage == whole.usage


def test_chat_parameters(live_server, fine_tune):
    client = live_server.client()
    short = ask(client, "gpt-3.5-turbo", "Tell me a long story about the sea.", max_tokens=5).choices[0]
    assert short.finish_reason == "length"
    completion = ask(client, "gpt-3.5-turbo", HELD_OUT[0])
    usage = completion.usage
    assert usage.prompt_tokens > 0 and usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    text = completion.choices[0].message.content
    cut = ask(client, "gpt-3.5-turbo", HELD_OUT[0], stop=[text[3:6]]).choices[0]
    assert cut.message.content == text[:3] and cut.finish_reason == "stop"
    sampled = [
        client.chat.completions.create(
            model="gpt-3.5-turbo",
            messages=[{"role": "user", "content": "Say something."}],
            temperature=1.0,
            top_p=0.9,
            seed=5,
            max_tokens=10,
        )
        .choices[0]
        .message.content
        for _ in range(2)
    ]
    assert sampled[0] == sampled[1]


def test_prompt_over_context_is_rejected(live_server):
    client = live_server.client()
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="gpt-3.5-turbo", messages=[{"role": "user", "content": "word " * 9000}])
    assert caught.value.code == "context_length_exceeded"


def test_validation_file_adds_validation_metrics(live_server):
    client = live_server.client()
    training = client.files.create(file=(DATA / "ahoy.jsonl").open("rb"), purpose="fine-tune")
    validation = client.files.create(file=("valid.jsonl", (DATA / "ahoy.jsonl").read_bytes()), purpose="fine-tune")
    job = client.fine_tuning.jobs.create(
        training_file=training.id,
        validation_file=validation.id,
        model="SmolLM2-135M-Instruct",
        hyperparameters={"n_epochs": 1, "batch_size": 4},
    )
    job = wait_for(client, job.id)
    assert job.status == "succeeded", job.error
    assert job.fine_tuned_model.startswith("ft:SmolLM2-135M-Instruct:personal::")
    assert job.hyperparameters.batch_size == 4 and job.hyperparameters.n_epochs == 1
    events = client.fine_tuning.jobs.list_events(job.id, limit=100).data
    assert f"Validating training file: {training.id} and validation file: {validation.id}" in [
        e.message for e in events
    ]
    last_step = next(e for e in events if e.type == "metrics")
    assert "full validation loss=" in last_step.message and last_step.data["full_valid_loss"] > 0
    rows = base64.b64decode(client.files.content(job.result_files[0]).content).decode().splitlines()
    assert rows[-1].split(",")[3] != ""  # valid_loss on the last step


def test_cancel_stops_a_running_job(live_server):
    client = live_server.client()
    training = client.files.create(file=(DATA / "ahoy.jsonl").open("rb"), purpose="fine-tune")
    job = client.fine_tuning.jobs.create(
        training_file=training.id, model="gpt-3.5-turbo", hyperparameters={"n_epochs": 20}
    )
    deadline = time.time() + 300
    while not any(e.type == "metrics" for e in client.fine_tuning.jobs.list_events(job.id).data):
        assert time.time() < deadline
        time.sleep(0.5)
    trainer = trainer_of(live_server)
    cancelled = client.fine_tuning.jobs.cancel(job.id)
    assert cancelled.status == "cancelled"
    trainer.wait(timeout=30)  # the worker sees the cancel at its next heartbeat (2 s) and kills it
    events = client.fine_tuning.jobs.list_events(job.id, limit=1000).data
    assert events[0].message == "Fine-tuning job cancelled"
    steps = [e.data for e in events if e.type == "metrics"]
    assert max(s["step"] for s in steps) < steps[0]["total_steps"]  # stopped, not finished
    final = client.fine_tuning.jobs.retrieve(job.id)
    assert final.status == "cancelled" and final.fine_tuned_model is None


def test_pause_and_resume_continue_from_the_last_checkpoint(live_server):
    client = live_server.client()
    training = client.files.create(file=(DATA / "ahoy.jsonl").open("rb"), purpose="fine-tune")
    job = client.fine_tuning.jobs.create(
        training_file=training.id, model="gpt-3.5-turbo", hyperparameters={"n_epochs": 3, "batch_size": 4}
    )
    with pytest.raises(openai.BadRequestError):
        client.fine_tuning.jobs.resume(job.id)  # not paused
    deadline = time.time() + 300
    while not client.fine_tuning.jobs.checkpoints.list(job.id).data:  # epoch 1 is saved
        assert time.time() < deadline
        time.sleep(0.3)
    assert client.fine_tuning.jobs.pause(job.id).status == "paused"
    time.sleep(3)
    assert client.fine_tuning.jobs.retrieve(job.id).status == "paused"
    assert client.fine_tuning.jobs.resume(job.id).status == "queued"
    job = wait_for(client, job.id)
    assert job.status == "succeeded", job.error
    events = list(reversed(client.fine_tuning.jobs.list_events(job.id, limit=1000).data))
    steps = [e.data["step"] for e in events if e.type == "metrics"]
    assert steps == list(range(1, 16))  # 3 epochs x 5 steps, each recorded once
    messages = [e.message for e in events]
    assert "Fine-tuning job paused" in messages and "Fine-tuning job resumed" in messages
    assert "Fine-tuning job started again (attempt 2)" in messages
    assert "Resumed from the checkpoint at step 5" in messages
    assert len(client.fine_tuning.jobs.checkpoints.list(job.id).data) == 3
