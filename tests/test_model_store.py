"""`openft models add|list|remove` on the tiny models of tests/tiny_models.py: what an add checks
and records, where an OpenAI name resolves, and that a bad source stores nothing.

The hub-id and remote-code adds run in a subprocess (`helpers.run_openft`): huggingface_hub and
transformers read their cache locations (HF_HUB_CACHE, HF_HOME) once, at import."""

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import uvicorn
from sqlalchemy import select
from typer.testing import CliRunner

import openft.models.store
from openft.cli.app import app
from openft.models.facts import read_facts
from openft.server.app import create_app
from openft.services.models import ModelService
from openft.settings import BUNDLED_MODEL, Settings
from openft.store.db import Database
from openft.store.tables import JobRow, ModelRow
from tests.helpers import TEN_EXAMPLES, hub_cache, in_process_client, new_data_dir, run_openft
from tests.tiny_models import MISTRAL_FIXED

runner = CliRunner()


def models(data_dir: Path, *args, env: dict | None = None):
    return runner.invoke(app, ["models", *map(str, args), "--data-dir", str(data_dir)], env=env)


def rows(data_dir: Path) -> dict[str, ModelRow]:
    db = Database(Settings(data_dir=data_dir))
    with db.session() as session:
        return {row.id: row for row in session.scalars(select(ModelRow))}


@pytest.fixture
def store(tmp_path, model_store) -> Path:
    """A data dir with the bundled model registered."""
    data_dir = new_data_dir(tmp_path / "data", model_store)
    assert models(data_dir, "import").exit_code == 0
    return data_dir


def test_add_from_a_folder_records_its_facts_and_aliases(store, tiny_models):
    result = models(store, "add", tiny_models["qwen2"], "--name", "qwen", "--alias", "gpt-4o-mini", "--alias", "q")

    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("qwen added: Qwen2ForCausalLM, 3.2M parameters, context 4,096, float32, ")
    row = rows(store)["qwen"]
    facts = read_facts(store / "models" / "qwen")
    assert facts.source == str(tiny_models["qwen2"]) and facts.digest.startswith("sha256:")
    assert (row.architecture, row.parameters, row.context_length, row.dtype) == (
        "Qwen2ForCausalLM",
        facts.parameters,
        4096,
        "float32",
    )
    assert (row.digest, row.size_bytes, row.trust_remote_code) == (facts.digest, facts.size_bytes, False)
    assert sorted(path.name for path in (store / "models" / "qwen").iterdir()) == [
        "chat_template.jinja",
        "config.json",
        "generation_config.json",
        "model.safetensors",
        "openft.json",
        "tokenizer.json",
        "tokenizer_config.json",
    ]

    listed = models(store, "list")
    assert listed.exit_code == 0
    line = next(line for line in listed.stdout.splitlines() if line.startswith("qwen "))
    for column in ("Qwen2ForCausalLM", "3.2M", "4,096", "float32", "MB", "gpt-4o-mini", "q"):
        assert column in line
    assert f"{BUNDLED_MODEL} (default)" in listed.stdout

    again = models(store, "add", tiny_models["qwen2"], "--name", "qwen")
    assert again.exit_code == 0 and "qwen already in the store" in again.stdout
    other = models(store, "add", tiny_models["qwen3"], "--name", "qwen")
    assert other.exit_code == 1 and "qwen is already in the store, added from" in other.stderr


def test_openai_names_resolve_by_setting_then_stored_alias_then_default_base(store, tiny_models):
    assert models(store, "add", tiny_models["qwen2"], "--name", "qwen", "--alias", "gpt-4o-mini").exit_code == 0
    assert models(store, "add", tiny_models["gemma"]).exit_code == 0
    settings = Settings(data_dir=store)
    service = ModelService(settings, Database(settings))
    assert service.base_for("gpt-4o-mini") == "qwen"  # stored by --alias
    assert service.base_for("gpt-3.5-turbo") == BUNDLED_MODEL  # the default base
    assert service.base_for("gemma") == "gemma"

    with_setting = Settings(data_dir=store, model_aliases={"gpt-4o-mini": "gemma", "support-bot": "gemma"})
    client = in_process_client(create_app(with_setting, run_worker=False))
    listed = {model.id: model for model in client.models.list().data}
    assert {BUNDLED_MODEL, "qwen", "gemma", "gpt-3.5-turbo", "gpt-4o-mini", "support-bot"} <= set(listed)
    assert listed["gpt-4o-mini"].root == "gemma" and listed["support-bot"].root == "gemma"  # the setting wins
    assert listed["gpt-3.5-turbo"].root == BUNDLED_MODEL and listed["qwen"].root == "qwen"
    assert len(listed) == len(client.models.list().data)  # each name once
    assert client.models.retrieve("support-bot").root == "gemma"


UNLABELLABLE = (  # prompts with the last user turn upper-cased, which the replies never follow
    "{% for m in messages %}<|im_start|>{{ m.role }}\n"
    "{{ m.content | upper if add_generation_prompt and loop.last else m.content }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def test_a_template_that_cannot_be_labelled_is_refused_then_fixed_with_chat_template(store, tiny_models, tmp_path):
    broken = tmp_path / "broken.jinja"
    broken.write_text(UNLABELLABLE)
    refused = models(store, "add", tiny_models["mistral"], "--chat-template", broken)
    assert refused.exit_code == 1
    assert refused.stderr.count("\n") == 1 and "generation prompt" in refused.stderr
    assert "--chat-template FILE" in refused.stderr
    assert "mistral" not in rows(store) and not (store / "models" / "mistral").exists()

    template = tmp_path / "mistral.jinja"
    template.write_text(MISTRAL_FIXED)
    added = models(store, "add", tiny_models["mistral"], "--chat-template", template)
    assert added.exit_code == 0, added.output
    assert (store / "models" / "mistral" / "chat_template.jinja").read_text() == MISTRAL_FIXED
    assert "chat_template" not in json.loads((store / "models" / "mistral" / "tokenizer_config.json").read_text())


# ---------------------------------------------------------------------------------------------
# bad sources: one line, exit 1, nothing stored


def corrupt(folder: Path) -> None:
    (folder / "model.safetensors").write_bytes(b"not a safetensors file" * 100)


def truncate(folder: Path) -> None:
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])


def remove_template(folder: Path) -> None:
    (folder / "chat_template.jinja").unlink()


def needs_remote_code(folder: Path) -> None:
    config = json.loads((folder / "config.json").read_text())
    config["model_type"] = "openft_toy"
    config["auto_map"] = {"AutoConfig": "configuration_toy.ToyConfig", "AutoModelForCausalLM": "modeling_toy.ToyLM"}
    (folder / "config.json").write_text(json.dumps(config))


def pickle_only(folder: Path) -> None:
    (folder / "model.safetensors").rename(folder / "pytorch_model.bin")


def missing_shard(folder: Path) -> None:
    index = {"metadata": {}, "weight_map": {"lm_head.weight": "model-00002-of-00002.safetensors"}}
    (folder / "model.safetensors.index.json").write_text(json.dumps(index))


def no_config(folder: Path) -> None:
    (folder / "config.json").unlink()


def no_tokenizer(folder: Path) -> None:
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (folder / name).unlink()


BAD_SOURCES = {
    "corrupt safetensors": (corrupt, "model.safetensors is not a whole safetensors file"),
    "truncated safetensors": (truncate, "model.safetensors is not a whole safetensors file"),
    "no chat template": (remove_template, "has no chat template (a base model, not an instruct one?): pass --chat"),
    "remote code": (needs_remote_code, "needs its own Python code to load (auto_map in its config.json): pass --trust"),
    "pickle weights": (pickle_only, "has only pickle weights (.bin/.pt)"),
    "missing shard": (missing_shard, "is missing weight files its model.safetensors.index.json names: model-00002"),
    "no config": (no_config, "has no config.json"),
    "no tokenizer": (no_tokenizer, "tokenizer does not load"),
}


@pytest.mark.parametrize("case", sorted(BAD_SOURCES))
def test_a_bad_source_fails_in_one_line_and_stores_nothing(store, tiny_models, tmp_path, case):
    spoil, message = BAD_SOURCES[case]
    source = tmp_path / "bad"
    shutil.copytree(tiny_models["llama"], source)
    spoil(source)
    before = set(rows(store))

    result = models(store, "add", source)

    assert result.exit_code == 1
    assert result.stderr.startswith("Error: bad") and result.stderr.count("\n") == 1, result.stderr
    assert message in result.stderr
    assert set(rows(store)) == before
    assert not (store / "models" / "bad").exists() and not list((store / "models").glob(".staging/*"))


def test_sources_that_are_nothing_fail_in_one_line(store, tmp_path):
    (tmp_path / "notes.txt").write_text("hi")
    (tmp_path / "broken.gguf").write_bytes(b"GGUF" + bytes(range(256)) * 4)
    for source, message in (
        (tmp_path / "missing-folder" / "x" / "y", "is not a folder, a .gguf file or a Hugging Face hub id"),
        (tmp_path / "notes.txt", "is neither a model folder nor a .gguf file"),
        (tmp_path / "broken.gguf", "broken.gguf does not convert from GGUF: "),
    ):
        result = models(store, "add", source)
        assert result.exit_code == 1 and message in result.stderr and result.stderr.count("\n") == 1, result.stderr
    assert not (store / "models" / "broken").exists() and not list((store / "models").glob(".staging/*"))
    bad_name = models(store, "add", tmp_path, "--name", "ft:x")
    assert bad_name.exit_code == 1 and "'ft:x' cannot be a model name" in bad_name.stderr


def test_an_alias_cannot_name_two_models(store, tiny_models):
    assert models(store, "add", tiny_models["qwen2"], "--alias", "support").exit_code == 0
    result = models(store, "add", tiny_models["qwen3"], "--alias", "support")
    assert result.exit_code == 1 and "support is already an alias of qwen2" in result.stderr
    assert "qwen3" not in rows(store) and not (store / "models" / "qwen3").exists()
    result = models(store, "add", tiny_models["qwen3"], "--alias", BUNDLED_MODEL)
    assert result.exit_code == 1 and f"{BUNDLED_MODEL} is already a model" in result.stderr


# ---------------------------------------------------------------------------------------------
# remote code and the hub, in subprocesses


def remote_code_model(tiny_models, folder: Path) -> Path:
    """The tiny Llama as a model of its own code: a config and a model class in Python files."""
    shutil.copytree(tiny_models["llama"], folder)
    needs_remote_code(folder)
    (folder / "configuration_toy.py").write_text(
        'from transformers import LlamaConfig\n\n\nclass ToyConfig(LlamaConfig):\n    model_type = "openft_toy"\n'
    )
    (folder / "modeling_toy.py").write_text(
        "from transformers import LlamaForCausalLM\n\nfrom .configuration_toy import ToyConfig\n\n\n"
        "class ToyLM(LlamaForCausalLM):\n    config_class = ToyConfig\n"
    )
    return folder


def test_remote_code_is_an_explicit_opt_in(store, tiny_models, tmp_path):
    source = remote_code_model(tiny_models, tmp_path / "toy")
    assert models(store, "add", source).exit_code == 1

    result = run_openft(
        "models", "add", source, "--trust-remote-code", "--data-dir", store, env={"HF_HOME": str(tmp_path / "hf")}
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("toy added: ToyLM,")
    assert rows(store)["toy"].trust_remote_code is True
    assert {"configuration_toy.py", "modeling_toy.py"} <= {path.name for path in (store / "models" / "toy").iterdir()}


TRAIN_AND_LOAD = """
import sys
from pathlib import Path
from openft.inference.local import LoadedBase
from openft.trainer.sft import train
from openft.trainer.spec import TrainSpec

model, data, out = map(Path, sys.argv[1:])
print(type(LoadedBase(model, transformers_only=True).load_model("none").model).__name__)
events = []
train(TrainSpec(str(model), str(data), str(out), n_epochs=1, batch_size=5, threads=1), events.append)
print(events[-1]["type"])
"""


def test_a_remote_code_model_trains_and_loads_for_serving(store, tiny_models, tmp_path):
    """The trainer and the engines read the opt-in next to the weights (`openft.json`)."""
    source = remote_code_model(tiny_models, tmp_path / "toy")
    env = {**os.environ, "HF_HOME": str(tmp_path / "hf")}
    added = run_openft("models", "add", source, "--trust-remote-code", "--data-dir", store, env=env)
    assert added.returncode == 0, added.stderr
    (tmp_path / "ten.jsonl").write_bytes(TEN_EXAMPLES)

    result = subprocess.run(
        [sys.executable, "-c", TRAIN_AND_LOAD, store / "models" / "toy", tmp_path / "ten.jsonl", tmp_path / "out"],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["ToyLM", "done"]


def test_a_hub_id_is_added_from_the_local_cache_offline(store, tiny_models, tmp_path):
    repo = hub_cache(tmp_path / "hf-cache", "openft-tests/tiny-qwen3", tiny_models["qwen3"])
    offline = {"HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(tmp_path / "hf-cache")}

    added = run_openft("models", "add", "openft-tests/tiny-qwen3", "--data-dir", store, env=offline)
    missing = run_openft("models", "add", "openft-tests/not-downloaded", "--data-dir", store, env=offline)

    assert added.returncode == 0, added.stderr
    assert added.stdout.startswith("tiny-qwen3 added: Qwen3ForCausalLM")
    weights = store / "models" / "tiny-qwen3" / "model.safetensors"
    blob = (repo / "snapshots").glob("*/model.safetensors").__next__().resolve()
    assert weights.stat().st_ino == blob.stat().st_ino  # hard-linked, not stored twice
    assert rows(store)["tiny-qwen3"].source == "openft-tests/tiny-qwen3"
    assert missing.returncode == 1 and missing.stderr.count("\n") == 1
    assert "openft-tests/not-downloaded is not in the local Hugging Face cache" in missing.stderr
    assert "HF_HUB_OFFLINE is set" in missing.stderr
    assert "not-downloaded" not in rows(store)


# ---------------------------------------------------------------------------------------------
# remove, and the settings that name bases


def add_job(data_dir: Path, base: str, status: str) -> None:
    db = Database(Settings(data_dir=data_dir))
    with db.session() as session:
        session.add(
            JobRow(
                id=f"ftjob-{status}",
                organization_id="org-openft",
                created_at=int(time.time()),
                model=base,
                base_model=base,
                status=status,
                training_file="file-x",
                seed=1,
                hyperparameters={},
                planned_model_name=f"ft:{base}:personal::x",
            )
        )


def test_remove_is_refused_while_something_depends_on_the_base(store, tiny_models):
    assert models(store, "add", tiny_models["phi3"], "--alias", "p").exit_code == 0
    add_job(store, "phi3", "running")
    result = models(store, "remove", "phi3")
    assert result.exit_code == 1 and "jobs that have not finished (ftjob-running)" in result.stderr

    db = Database(Settings(data_dir=store))
    with db.session() as session:
        session.get(JobRow, 1).status = "succeeded"
        tune = ModelRow(id="ft:phi3:personal::x", created=0, owned_by="personal", base_model="phi3", adapter_key="a")
        session.add(tune)
    result = models(store, "remove", "phi3")
    assert result.exit_code == 1 and "fine-tunes (ft:phi3:personal::x)" in result.stderr
    with db.session() as session:
        session.delete(session.scalar(select(ModelRow).where(ModelRow.id == "ft:phi3:personal::x")))

    assert models(store, "remove", "p").stdout == "Removed the alias p.\n"
    assert models(store, "add", tiny_models["phi3"], "--alias", "p").exit_code == 0
    assert models(store, "remove", "phi3").stdout == "Removed the base phi3.\n"
    assert not {"phi3", "p"} & set(rows(store)) and not (store / "models" / "phi3").exists()
    for name, message in ((BUNDLED_MODEL, "is OPENFT_DEFAULT_BASE_MODEL"), ("gpt-4o-mini", "change the setting")):
        result = models(store, "remove", name)
        assert result.exit_code == 1 and message in result.stderr


def test_serve_and_worker_refuse_a_default_base_that_is_not_registered(tmp_path, tiny_models, monkeypatch):
    served = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kwargs: served.append(kwargs))
    data_dir = tmp_path / "data"
    env = {"OPENFT_DEFAULT_BASE_MODEL": "qwen2"}
    for command in ("serve", "worker"):
        result = runner.invoke(app, [command, "--data-dir", str(data_dir)], env=env)
        assert result.exit_code == 1 and result.stderr.count("\n") == 1
        assert result.stderr.startswith("Error: OPENFT_DEFAULT_BASE_MODEL is 'qwen2', which is not a registered base")
        assert "openft models add SOURCE --name qwen2" in result.stderr
    result = runner.invoke(app, ["serve", "--data-dir", str(data_dir)], env={"OPENFT_MODEL_ALIASES": '{"a": "b"}'})
    assert result.exit_code == 1 and "OPENFT_MODEL_ALIASES['a'] is 'b'" in result.stderr
    assert served == []

    assert models(data_dir, "add", tiny_models["qwen2"]).exit_code == 0
    monkeypatch.setattr(openft.models.store, "ensure_bundled_model", pytest.fail)  # not the default: not imported
    assert runner.invoke(app, ["serve", "--data-dir", str(data_dir)], env=env).exit_code == 0
    assert len(served) == 1


def test_a_bundled_model_imported_before_facts_existed_is_adopted_where_it_is(tmp_path, model_store):
    bundled = model_store / BUNDLED_MODEL
    old = tmp_path / "data" / "models" / BUNDLED_MODEL
    old.mkdir(parents=True)
    for path in bundled.iterdir():
        if path.name != "openft.json":
            os.link(path, old / path.name)  # the same files, without a copy

    assert models(tmp_path / "data", "import").exit_code == 0

    assert read_facts(old) == read_facts(bundled)
    assert rows(tmp_path / "data")[BUNDLED_MODEL].digest == read_facts(bundled).digest
