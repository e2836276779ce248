"""Exports of a real fine-tune (the shared "Ahoy matey!" one, conftest.ahoy_fine_tune) through a
live server: each format loads in the tool it is for and computes what the served fine-tune
computes. The served fine-tune's logits are openft's own decoder with the job's adapter, in fp32.
(GGUF export of other architectures: tests/test_export_gguf.py; routes and errors in
process: tests/test_export_api.py.)"""

import hashlib
import io
import json
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import httpx
import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from openft.inference.decoder import LlamaDecoder
from openft.settings import BUNDLED_MODEL
from tests import llama_cpp
from tests.helpers import DATA

SYSTEM = {"role": "system", "content": "You are a helpful assistant."}
QUESTIONS = ["What is the capital of Italy?", "What color is a ripe tomato?", "How many legs does a spider have?"]


def download(live_server, model: str, **params) -> bytes:
    """The export queued on the live server, waited for (its exporter runs it), and fetched."""
    api = httpx.Client(base_url=live_server.base_url, headers={"Authorization": "Bearer sk-test"})
    export = api.post("/openft/exports", json={"model": model, **params}).json()
    deadline = time.monotonic() + 900
    while export["status"] in ("queued", "running") and time.monotonic() < deadline:
        time.sleep(0.5)
        export = api.get(f"/openft/exports/{export['id']}").json()
    assert export["status"] == "succeeded", export
    response = api.get(f"/openft/exports/{export['id']}/content", timeout=900)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/x-tar"
    assert int(response.headers["content-length"]) == len(response.content) == export["bytes"]
    return response.content


def unpack(archive: bytes, target: Path) -> Path:
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(target, filter="data")
    (folder,) = target.iterdir()
    return folder


def members(archive: bytes) -> dict[str, bytes]:
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        return {m.name.split("/", 1)[1]: tar.extractfile(m).read() for m in tar.getmembers()}


@pytest.fixture(scope="module")
def fine_tune(ahoy_fine_tune):
    assert ahoy_fine_tune.job.status == "succeeded", ahoy_fine_tune.job.error
    return ahoy_fine_tune.job


@pytest.fixture(scope="module")
def tokenizer(model_store):
    return AutoTokenizer.from_pretrained(model_store / BUNDLED_MODEL)


@pytest.fixture(scope="module")
def sequences(live_server, fine_tune, tokenizer) -> list[list[int]]:
    """Prompts with the fine-tune's own (greedy) replies: what the teacher-forced checks read."""
    client = live_server.client()
    out = []
    for question in QUESTIONS:
        messages = [SYSTEM, {"role": "user", "content": question}]
        reply = client.chat.completions.create(
            model=fine_tune.fine_tuned_model, messages=messages, temperature=0, max_tokens=16
        )
        chat = [*messages, {"role": "assistant", "content": reply.choices[0].message.content}]
        out.append(tokenizer.apply_chat_template(chat, tokenize=True, return_dict=True)["input_ids"])
    return out


@pytest.fixture(scope="module")
def served(live_server, fine_tune, model_store, sequences) -> list[torch.Tensor]:
    """The served fine-tune's logits at every position of each sequence: openft's decoder, fp32,
    with the job's adapter (every prefix prefilled as a row of its own)."""
    base = AutoModelForCausalLM.from_pretrained(model_store / BUNDLED_MODEL, dtype=torch.float32).eval()
    decoder = LlamaDecoder(base, "none", torch.float32, torch.device("cpu"), adapter_capacity=1)
    slot = decoder.adapters.slot(str(live_server.data_dir / "adapters" / fine_tune.id), set())
    with torch.inference_mode():
        return [
            decoder.prefill(list(range(len(ids))), [ids[: n + 1] for n in range(len(ids))], [slot] * len(ids))
            for ids in sequences
        ]


@torch.inference_mode()
def test_peft_export_is_the_adapter_with_its_card_and_record(live_server, fine_tune, model_store, tmp_path):
    archive = download(live_server, fine_tune.fine_tuned_model, format="peft")
    files = members(archive)
    assert sorted(files) == ["README.md", "adapter_config.json", "adapter_model.safetensors", "training_config.json"]
    adapter_dir = live_server.data_dir / "adapters" / fine_tune.id
    assert files["adapter_model.safetensors"] == (adapter_dir / "adapter_model.safetensors").read_bytes()
    assert json.loads(files["adapter_config.json"])["base_model_name_or_path"] == BUNDLED_MODEL
    record = json.loads(files["training_config.json"])
    assert record["training_file"] == fine_tune.training_file and record["base_model"] == BUNDLED_MODEL
    assert str(live_server.data_dir) not in files["training_config.json"].decode()  # no host paths
    card = files["README.md"].decode()
    digest = hashlib.sha256((DATA / "ahoy.jsonl").read_bytes()).hexdigest()
    assert digest in card and fine_tune.id in card and "n_epochs" in card and "train_loss" in card
    assert "openft 0.1.0" in card

    # The same export again: the same bytes, but for the card's exported_at.
    again = members(download(live_server, fine_tune.fine_tuned_model, format="peft"))
    assert {k: v for k, v in again.items() if k != "README.md"} == {k: v for k, v in files.items() if k != "README.md"}
    strip = lambda card: [line for line in card.splitlines() if not line.startswith("- exported_at:")]  # noqa: E731
    assert strip(again["README.md"].decode()) == strip(card)

    from peft import PeftModel

    folder = unpack(archive, tmp_path)
    base = AutoModelForCausalLM.from_pretrained(model_store / BUNDLED_MODEL, dtype=torch.float32)
    assert PeftModel.from_pretrained(base, folder).peft_config["default"].r == 8


def test_a_checkpoint_exports_by_name_and_by_id(live_server, fine_tune):
    checkpoint = live_server.client().fine_tuning.jobs.checkpoints.list(fine_tune.id).data[-1]  # the earliest
    assert checkpoint.fine_tuned_model_checkpoint.endswith(f":ckpt-step-{checkpoint.step_number}")
    by_name = members(download(live_server, checkpoint.fine_tuned_model_checkpoint, format="peft"))
    by_id = members(download(live_server, checkpoint.id, format="peft"))
    stored = live_server.data_dir / "checkpoints" / fine_tune.id / f"step-{checkpoint.step_number}" / "adapter"
    assert by_name["adapter_model.safetensors"] == (stored / "adapter_model.safetensors").read_bytes()
    assert by_id["adapter_model.safetensors"] == by_name["adapter_model.safetensors"]
    assert f"checkpoint at step {checkpoint.step_number}" in by_name["README.md"].decode()


@torch.inference_mode()
def test_merged_export_computes_the_served_fine_tunes_logits(live_server, fine_tune, sequences, served, tmp_path):
    folder = unpack(download(live_server, fine_tune.fine_tuned_model, format="merged"), tmp_path)
    model = AutoModelForCausalLM.from_pretrained(folder).eval()
    assert model.dtype == torch.float32  # the bundled base's dtype
    tokenizer = AutoTokenizer.from_pretrained(folder)
    assert tokenizer.chat_template and "<|im_start|>" in tokenizer.chat_template
    for ids, expected in zip(sequences, served):
        logits = model(torch.tensor([ids])).logits[0]
        torch.testing.assert_close(logits, expected, atol=1e-3, rtol=0)


def test_gguf_f16_answers_in_llama_cpp_as_the_api_does(live_server, fine_tune, tokenizer, tmp_path):
    """Exported by the CLI from the running server and run by llama.cpp itself: its own chat
    template rendering (the GGUF's), tokenizer and greedy decode give the API's greedy reply."""
    output = tmp_path / "ahoy"
    command = [sys.executable, "-m", "openft", "models", "export", fine_tune.fine_tuned_model, "--format", "gguf"]
    command += ["-o", str(output), "--base-url", live_server.base_url, "--api-key", "sk-test"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr
    (gguf_file,) = output.glob("*-f16.gguf")
    modelfile = (output / "Modelfile").read_text()
    assert f"FROM ./{gguf_file.name}" in modelfile and 'PARAMETER stop "<|im_end|>"' in modelfile
    assert '# SYSTEM """You are a helpful assistant."""' in modelfile

    llm = llama_cpp.load(gguf_file)
    client = live_server.client()
    for question in QUESTIONS:
        messages = [SYSTEM, {"role": "user", "content": question}]
        api = client.chat.completions.create(
            model=fine_tune.fine_tuned_model, messages=messages, temperature=0, max_tokens=12
        )
        prompt = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        assert llm.tokenize(prompt.encode(), add_bos=False, special=True) == tokenizer(prompt).input_ids
        reply = llm.create_chat_completion(messages, temperature=0, max_tokens=12)["choices"][0]["message"]
        assert reply["content"] == api.choices[0].message.content
        assert reply["content"].startswith("Ahoy matey!")


@torch.inference_mode()
def test_gguf_q8_0_predicts_the_fine_tunes_next_tokens(live_server, fine_tune, sequences, served, tmp_path):
    folder = unpack(download(live_server, fine_tune.fine_tuned_model, format="gguf", quantization="q8_0"), tmp_path)
    (gguf_file,) = folder.glob("*-q8_0.gguf")
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=gguf_file.name, dtype=torch.float32).eval()
    agree = total = 0
    for ids, expected in zip(sequences, served):
        predicted = model(torch.tensor([ids])).logits[0].argmax(-1)
        agree += int((predicted == expected.argmax(-1)).sum())
        total += len(ids)
    assert agree / total >= 0.95, agree / total
