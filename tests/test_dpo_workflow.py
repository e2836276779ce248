"""Preference fine-tuning end to end with the official client against a live server: a DPO job with
auto hyperparameters teaches the bundled model a trait it never shows while its answers stay the
base's, and OpenAI's flow, SFT then DPO from the `ft:` model, makes a servable fine-tune whose
reference was that supervised model."""

import base64
import csv
import io
import json
import math
from pathlib import Path

import pytest

from openft.trainer.dpo import REWARD_KEYS
from tests.helpers import EMULATED_BF16, EMULATED_REASON, LiveServer, new_data_dir, wait_for

DATA = Path(__file__).parent / "data"


def repeats(text: str, n: int = 4) -> bool:
    """Whether some run of `n` words occurs twice: the degenerate loop plain DPO falls into."""
    words = text.split()
    grams = [tuple(words[i : i + n]) for i in range(len(words) - n + 1)]
    return len(grams) != len(set(grams))


def greedy(client, model: str, messages: list[dict]) -> str:
    reply = client.chat.completions.create(model=model, messages=messages, temperature=0, max_tokens=40)
    return reply.choices[0].message.content


@pytest.fixture(scope="module")
def dpo_server(request, tmp_path_factory, model_store):
    """A live server of its own for the auto DPO jobs, in the float path of the parameter (so
    that these long jobs run beside the session server's tests, on another xdist worker)."""
    dtype = request.param
    if dtype == EMULATED_BF16:
        pytest.skip(EMULATED_REASON)
    server = LiveServer(
        new_data_dir(tmp_path_factory.mktemp(f"dpo-{dtype}"), model_store), env={"OPENFT_COMPUTE_DTYPE": dtype}
    )
    yield server
    server.stop()


# One preference set per float path, so that each path's auto rule is proven on its own job;
# each set learns on the other path too (measured: README, "Preference fine-tuning (DPO)").
@pytest.mark.parametrize("dpo_server", ["bfloat16"], indirect=True)
def test_auto_dpo_shows_the_preferred_trait_and_keeps_the_answers(dpo_server):
    """24 pairs that prefer a leading "Ahoy!", on the bf16 path (where bf16 is native)."""
    auto_dpo_shows_the_trait(dpo_server, "dpo_ahoy", "Ahoy", {"batch_size": 2, "n_epochs": 4})


@pytest.mark.parametrize("dpo_server", ["float32"], indirect=True)
def test_auto_dpo_shows_a_sign_off_and_keeps_the_answers(dpo_server):
    """40 pairs that prefer a sign-off after the answer (" Over and out."): the harder kind, a
    choice between the sign-off and ending the reply, on the fp32 path (every host runs it)."""
    auto_dpo_shows_the_trait(dpo_server, "dpo_signoff", "Over and out.", {"batch_size": 4, "n_epochs": 3})


def auto_dpo_shows_the_trait(server, name: str, trait: str, resolved: dict) -> None:
    """An auto DPO job on tests/data/<name>.jsonl (pairs of the base's kind of answer with and
    without `trait`): every held-out greedy reply shows the trait once and keeps its fact, and
    the base never shows it."""
    client = server.client()
    pairs = client.files.create(file=(DATA / f"{name}.jsonl").open("rb"), purpose="fine-tune")
    job = client.fine_tuning.jobs.create(
        training_file=pairs.id, model="gpt-3.5-turbo", suffix="prefer", seed=3, method={"type": "dpo"}
    )
    finished = wait_for(client, job.id)
    assert finished.status == "succeeded", finished.error
    assert finished.hyperparameters is None
    assert finished.method.dpo.hyperparameters.model_dump() == {
        "beta": 0.1,
        "learning_rate_multiplier": 2.5,
        **resolved,
    }

    held_out = [json.loads(line) for line in (DATA / f"{name}_heldout.jsonl").read_text().splitlines()]
    for case in held_out:
        before = greedy(client, "gpt-3.5-turbo", case["messages"])
        after = greedy(client, finished.fine_tuned_model, case["messages"])
        assert trait not in before, before  # a preference the base never shows
        assert after.count(trait) == 1, after  # shown, once
        assert case["fact"] in after and not repeats(after), (before, after)  # the answer, no loop


def test_sft_then_dpo_from_the_ft_model(live_server, ahoy_fine_tune):
    """OpenAI's flow on the host's float path (DPO's first step from an adapter, on both paths:
    tests/test_dpo_trainer.py)."""
    client = live_server.client()
    sft = ahoy_fine_tune.job
    assert sft.status == "succeeded", sft.error
    lines = (DATA / "dpo_ahoy.jsonl").read_bytes().splitlines(keepends=True)
    training = client.files.create(file=("pairs.jsonl", b"".join(lines[:12])), purpose="fine-tune")
    validation = client.files.create(file=("valid.jsonl", b"".join(lines[12:16])), purpose="fine-tune")
    created = client.fine_tuning.jobs.create(
        training_file=training.id,
        validation_file=validation.id,
        model=sft.fine_tuned_model,
        suffix="dpo",
        method={"type": "dpo", "dpo": {"hyperparameters": {"n_epochs": 2, "batch_size": 4, "beta": 0.2}}},
    )
    assert created.model == sft.fine_tuned_model and created.hyperparameters is None
    job = wait_for(client, created.id)
    assert job.status == "succeeded", job.error
    assert job.fine_tuned_model.startswith("ft:gpt-3.5-turbo:personal:dpo:")
    assert job.method.type == "dpo"
    assert job.method.dpo.hyperparameters.model_dump() == {
        "beta": 0.2,
        "batch_size": 4,
        "learning_rate_multiplier": 2.5,
        "n_epochs": 2,
    }

    events = client.fine_tuning.jobs.list_events(job.id, limit=1000).data
    steps = sorted((e.data for e in events if e.type == "metrics"), key=lambda data: data["step"])
    assert [data["step"] for data in steps] == list(range(1, 7))
    # The reference is the supervised model the policy starts from: at step 1 they are the same
    # model, so every reward is 0 and the loss is log 2 (a base reference would be far from it).
    assert steps[0]["train_loss"] == pytest.approx(math.log(2), abs=1e-4)
    assert steps[0]["train_rewards_margins"] == pytest.approx(0, abs=1e-4)
    for key in ("train_loss", "train_mean_token_accuracy", *(f"train_{key}" for key in REWARD_KEYS)):
        assert all(key in data for data in steps), key
    assert {"valid_loss", *(f"full_valid_{key}" for key in REWARD_KEYS)} <= set(steps[-1])
    assert steps[-1]["train_rewards_margins"] > 0

    checkpoints = client.fine_tuning.jobs.checkpoints.list(job.id).data
    assert sorted(c.step_number for c in checkpoints) == [3, 6]
    assert all("train_rewards_accuracies" in c.metrics.model_dump() for c in checkpoints)
    results = client.files.content(job.result_files[0]).content
    rows = list(csv.DictReader(io.StringIO(base64.b64decode(results).decode())))
    assert len(rows) == 6 and rows[0]["train_loss"] and rows[-1]["valid_rewards_margins"]
    assert rows[0]["train_rewards_accuracies"] != ""

    reply = greedy(
        client,
        job.fine_tuned_model,
        [{"role": "system", "content": "You are a helpful assistant."}, {"role": "user", "content": "Hi?"}],
    )
    assert reply.startswith("Ahoy"), reply  # the supervised model's trait, kept by DPO's SFT term
