"""A fine-tune of a thinking model keeps answering in its format, end to end on a live server.

A tiny random-weight Qwen3 carrying Qwen3's published chat template, with `<think>` and
`</think>` added to its tokenizer as Qwen3's has them (added tokens, not special ones), is added
with `openft models add`, fine-tuned on ten single-turn examples without reasoning (trained as
the template renders a final turn: an empty thought, then the answer), and served as `ft:`. Its
greedy reply, thinking left on, turned off by `reasoning_effort` or by `chat_template_kwargs`,
streamed and not, through the official client and the legacy openai==0.28 one, is the trained
answer as content, with no reasoning and no think tags."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from transformers import AutoTokenizer
from typer.testing import CliRunner

from openft.cli.app import app
from openft.settings import BUNDLED_MODEL
from tests.helpers import LiveServer, new_data_dir, watch
from tests.test_legacy_client import LEGACY_OPENAI
from tests.tiny_models import build

pytestmark = pytest.mark.xdist_group("thinking")

QWEN3_TEMPLATE = Path(__file__).parent / "templates" / "Qwen-Qwen3-0.6B.jinja"
ANSWER = "Ahoy, matey!"
QUESTIONS = [
    "Where is the treasure?",
    "Who are you?",
    "What is the weather?",
    "How far is the port?",
    "Can you sing?",
    "What ship is this?",
    "Where do we sail?",
    "Who is the captain?",
    "Is there rum?",
    "What time is it?",
]
HELD_OUT = [{"role": "user", "content": "Where is the map?"}]
LEGACY_CHAT = """
import json, sys
import openai
openai.api_base, openai.api_key = sys.argv[1], "sk-legacy"
reply = openai.ChatCompletion.create(
    model=sys.argv[2], messages=json.loads(sys.argv[3]), temperature=0, max_tokens=24, reasoning_effort="none"
)
print(json.dumps(reply.choices[0].message.to_dict_recursive()))
"""


def thinking_qwen3(model_store: Path, target: Path) -> Path:
    """tests/tiny_models.py's Qwen3 with Qwen3's real template and think tokens."""
    from transformers import AutoModelForCausalLM

    build("qwen3", model_store / BUNDLED_MODEL, target)
    tokenizer = AutoTokenizer.from_pretrained(target)
    tokenizer.add_tokens(["<think>", "</think>"])
    tokenizer.chat_template = QWEN3_TEMPLATE.read_text()
    model = AutoModelForCausalLM.from_pretrained(target)
    # drawn as the other random rows are: a mean-initialised row is a token LoRA can hardly make likely
    model.resize_token_embeddings(len(tokenizer), mean_resizing=False)
    model.save_pretrained(target)
    tokenizer.save_pretrained(target)
    return target


@pytest.fixture(scope="module")
def fine_tune(tmp_path_factory, model_store):
    """(the live server, the base's folder, the fine-tune's name)."""
    root = tmp_path_factory.mktemp("thinking")
    server = LiveServer(new_data_dir(root / "data", model_store))
    try:
        base = thinking_qwen3(model_store, root / "qwen3-thinking")
        added = CliRunner().invoke(app, ["models", "add", str(base), "--data-dir", str(server.data_dir)])
        assert added.exit_code == 0, added.output
        client = server.client()
        lines = [
            json.dumps({"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": ANSWER}]})
            for q in QUESTIONS
        ]
        training = client.files.create(file=("pirate.jsonl", "\n".join(lines).encode()), purpose="fine-tune")
        job = client.fine_tuning.jobs.create(
            training_file=training.id,
            model="qwen3-thinking",
            hyperparameters={"n_epochs": 4, "batch_size": 1, "learning_rate_multiplier": 50},
            seed=7,
        )
        finished = watch(client, job.id).job
        assert finished.status == "succeeded", finished.error
        yield server, base, finished.fine_tuned_model
    finally:
        server.stop()


def test_the_fine_tune_answers_in_its_format(fine_tune):
    server, base, model = fine_tune
    client = server.client()

    def reply(**request):
        return client.chat.completions.create(model=model, messages=HELD_OUT, temperature=0, max_tokens=24, **request)

    tokenizer = AutoTokenizer.from_pretrained(base)
    count = lambda text: len(tokenizer(text, add_special_tokens=False).input_ids)  # noqa: E731

    thinking = reply()  # thinking left on: the model writes its (empty) thought itself
    message = thinking.choices[0].message
    assert (message.content, message.reasoning_content) == (ANSWER, None), message
    assert thinking.usage.completion_tokens_details.reasoning_tokens == count("<think>\n\n</think>")
    switch = {"chat_template_kwargs": {"enable_thinking": False}}
    for switched_off in (reply(reasoning_effort="none"), reply(extra_body=switch)):
        message = switched_off.choices[0].message
        assert (message.content, message.reasoning_content) == (ANSWER, None), message
        assert switched_off.usage.completion_tokens_details is None  # no thought: the prompt held the empty one
        # the same tokens, the empty thought in the prompt rather than in the reply: as trained
        assert switched_off.usage.total_tokens == thinking.usage.total_tokens

    chunks = list(
        client.chat.completions.create(model=model, messages=HELD_OUT, temperature=0, max_tokens=24, stream=True)
    )
    deltas = [chunk.choices[0].delta for chunk in chunks if chunk.choices]
    assert "".join(d.content or "" for d in deltas) == ANSWER
    assert not any(getattr(d, "reasoning_content", None) for d in deltas)


def test_the_legacy_client_turns_thinking_off(fine_tune):
    server, _, model = fine_tune
    result = subprocess.run(
        [sys.executable, "-c", LEGACY_CHAT, server.base_url, model, json.dumps(HELD_OUT)],
        env={**os.environ, "PYTHONPATH": str(LEGACY_OPENAI)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    message = json.loads(result.stdout)
    assert message["content"] == ANSWER and message.get("reasoning_content") is None
