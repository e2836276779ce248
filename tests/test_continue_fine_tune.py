"""Fine-tuning a fine-tune, end to end with the official client: a job whose `model` is an `ft:`
model starts from that fine-tune's adapter (its first step's loss is already the low loss the
first job ended on), echoes the `ft:` name as its model, and makes a servable fine-tune named
after the root base, as OpenAI names it."""

from tests.helpers import wait_for


def step_losses(client, job_id: str) -> list[float]:
    events = client.fine_tuning.jobs.list_events(job_id, limit=1000).data
    return [
        e.data["train_loss"] for e in sorted((e for e in events if e.type == "metrics"), key=lambda e: e.data["step"])
    ]


def test_a_job_on_an_ft_model_goes_on_from_its_adapter(live_server, ahoy_fine_tune):
    client = live_server.client()
    first = ahoy_fine_tune.job
    assert first.status == "succeeded", first.error
    created = client.fine_tuning.jobs.create(
        training_file=ahoy_fine_tune.uploaded.id,
        model=first.fine_tuned_model,
        suffix="again",
        seed=2,
        hyperparameters={"n_epochs": 1},
    )
    assert created.model == first.fine_tuned_model
    second = wait_for(client, created.id)
    assert second.status == "succeeded", second.error
    assert second.model == first.fine_tuned_model
    assert second.fine_tuned_model.startswith("ft:gpt-3.5-turbo:personal:again:")

    first_losses, second_losses = step_losses(client, first.id), step_losses(client, second.id)
    # From scratch the first step's loss is the base model's; from the adapter it is already low.
    assert second_losses[0] < first_losses[0] / 3, (first_losses[:3], second_losses[:3])

    reply = client.chat.completions.create(
        model=second.fine_tuned_model,
        messages=[{"role": "system", "content": "You are a helpful assistant."}, {"role": "user", "content": "Hi?"}],
        temperature=0,
        max_tokens=8,
    )
    assert reply.model == second.fine_tuned_model
    assert reply.choices[0].message.content.startswith("Ahoy matey!")
