"""The families users bring, each with its published chat template and its architecture's
features at toy size (tests/tiny_models.py REAL_FAMILIES, tests/templates/).

Per family, without a server: a multi-turn chat with a system message, tools and a `weight: 0`
reply trains exactly the trained replies and their end-of-turn tokens, and for each trained
reply the token ids training puts before it are the ids the server prompts with for that
conversation (no train/serve skew). Then, one live server for all: each family is added with
`openft models add`, fine-tuned a step through the official client, served as its `ft:` model
(streamed and not), and the served log-probabilities equal transformers' + peft's on the same
prompt in fp32."""

import math

import pytest
from transformers import AutoTokenizer
from typer.testing import CliRunner

from openft.cli.app import app
from openft.data.chat_format import ChatTemplate
from openft.data.labels import IGNORE_INDEX, probe_template, render_example
from tests.helpers import TEN_EXAMPLES, LiveServer, new_data_dir, watch
from tests.tiny_models import REAL_FAMILIES

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "The weather in a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
    }
]
CHAT = {
    "tools": TOOLS,
    "messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello!"},
        {"role": "user", "content": "Weather?"},
        {"role": "assistant", "content": "Sunny.", "weight": 0},
        {"role": "user", "content": "Again"},
        {"role": "assistant", "content": "Hello again!"},
    ],
}
TRAINED = ("Hello!", "Hello again!")
# what a family's template writes into a reply besides its content (Qwen3: an empty think block
# in a turn after the last user message, which each trained reply is, in its own sequence)
REPLY_PREFIX = {"qwen3": "<think>\n\n</think>\n\n", "mistral-v0.3": " ", "mistral-small-3.2": ""}
END_OF_TURN = {"gemma-2": "<end_of_turn>", "gemma-3": "<end_of_turn>", "phi-3.5": "<|end|>"}
FAMILIES = sorted(REAL_FAMILIES)


@pytest.fixture(scope="module")
def tokenizers(family_models):
    return {family: AutoTokenizer.from_pretrained(path) for family, path in family_models.items()}


@pytest.mark.parametrize("family", FAMILIES)
def test_each_family_trains_its_replies_with_the_prompts_the_server_feeds(tokenizers, family):
    tokenizer = tokenizers[family]
    rendered = render_example(tokenizer, CHAT, max_length=2048)
    sequences = rendered.sequences()
    end = END_OF_TURN.get(family, tokenizer.eos_token)
    for j, message in enumerate(CHAT["messages"]):
        if message["role"] != "assistant":
            continue
        prompt = ChatTemplate(tokenizer).prompt_ids(CHAT["messages"][:j], TOOLS)
        hits = [
            labels[len(prompt) :]
            for ids, labels in sequences
            if ids[: len(prompt)] == prompt and len(ids) > len(prompt) and labels[len(prompt) - 1] == IGNORE_INDEX
        ]
        if message.get("weight", 1) == 0:
            assert not any(labels and labels[0] != IGNORE_INDEX for labels in hits), family
            continue
        [labels] = [labels for labels in hits if labels[0] != IGNORE_INDEX]  # once, right after its prompt
        trained = labels[: labels.index(IGNORE_INDEX) if IGNORE_INDEX in labels else len(labels)]
        text = tokenizer.decode(trained)
        assert text == REPLY_PREFIX.get(family, "") + message["content"] + end, (family, text)
    trained = tokenizer.decode([label for label in rendered.labels if label != IGNORE_INDEX])
    assert sorted(trained.split(end)) == sorted(["", *(REPLY_PREFIX.get(family, "") + reply for reply in TRAINED)])
    probe_template(tokenizer)  # an add accepts it


def test_deepseek_r1_replies_are_trained_after_its_closed_think_block(tokenizers):
    """Its prompt ends `<think>\n</think>` (llama.cpp's copy of the template, with thinking off
    by default); the replies it renders have no think block: each is trained after the prompt."""
    tokenizer = tokenizers["deepseek-r1-distill-qwen"]
    prompt = tokenizer.decode(ChatTemplate(tokenizer).prompt_ids(CHAT["messages"][:2]))
    assert prompt.endswith("<｜Assistant｜><think>\n</think>")
    texts = [tokenizer.decode(ids) for ids, _ in render_example(tokenizer, CHAT, max_length=2048).sequences()]
    assert [text.endswith("<｜Assistant｜><think>\n</think>Hello!<｜end▁of▁sentence｜>") for text in texts].count(
        True
    ) == 1


# ---------------------------------------------------------------------------------------------
# end to end: one live server for every family

QUESTION = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Where is the treasure?"}]


@pytest.fixture(scope="module")
def family_server(tmp_path_factory, model_store):
    root = tmp_path_factory.mktemp("families")
    server = LiveServer(
        new_data_dir(root / "server", model_store),
        env={"OPENFT_COMPUTE_DTYPE": "float32", "OPENFT_SERVE_QUANTIZE": "none"},
    )
    yield server
    server.stop()


def test_each_family_is_added_fine_tuned_and_served_with_transformers_logits(family_server, family_models):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    data_dir = family_server.data_dir
    for family in FAMILIES:
        added = CliRunner().invoke(
            app, ["models", "add", str(family_models[family]), "--name", family, "--data-dir", str(data_dir)]
        )
        assert added.exit_code == 0, (family, added.output)

    client = family_server.client()
    uploaded = client.files.create(file=("ten.jsonl", TEN_EXAMPLES), purpose="fine-tune")
    jobs = {
        family: client.fine_tuning.jobs.create(
            training_file=uploaded.id, model=family, hyperparameters={"n_epochs": 1, "batch_size": 10}, seed=3
        )
        for family in FAMILIES
    }
    worst = {}
    for family, job in jobs.items():
        finished = watch(client, job.id).job
        assert finished.status == "succeeded", (family, finished.error)
        model = finished.fine_tuned_model
        whole = client.chat.completions.create(
            model=model, messages=QUESTION, max_tokens=3, temperature=0, logprobs=True, top_logprobs=5
        )
        chunks = list(
            client.chat.completions.create(model=model, messages=QUESTION, max_tokens=3, temperature=0, stream=True)
        )
        assert (
            "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == whole.choices[0].message.content
        )

        # the served log-probabilities of the first answer token against transformers + peft, fp32
        tokenizer = AutoTokenizer.from_pretrained(family_models[family])
        prompt = ChatTemplate(tokenizer).prompt_ids(QUESTION)
        base = AutoModelForCausalLM.from_pretrained(family_models[family], torch_dtype=torch.float32)
        tuned = PeftModel.from_pretrained(base, data_dir / "adapters" / finished.id).eval()
        with torch.no_grad():
            logprobs = torch.log_softmax(tuned(torch.tensor([prompt])).logits[0, -1].float(), -1)
        served = sorted((t.logprob for t in whole.choices[0].logprobs.content[0].top_logprobs), reverse=True)
        expected = torch.topk(logprobs, len(served)).values.tolist()
        diffs = [abs(a - b) for a, b in zip(served, expected)]
        worst[family] = max(diffs)
    print("max |served - transformers| logprob per family:", {f: f"{d:.2e}" for f, d in worst.items()})
    assert all(math.isfinite(d) and d <= 1e-4 for d in worst.values()), worst
