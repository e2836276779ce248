"""What a model folder must be for openft to train and serve it, checked once, when it is added.

In order, cheapest first, each failure one line that says what to do:
- a config and safetensors weights (the files transformers would load: the index's, or
  `model.safetensors`), every header whole (a truncated or corrupt file fails here, not in a
  job); pickle weights (`.bin`) are refused, since loading them can run code;
- an architecture transformers itself implements as a causal LM; a config whose class is the
  model's own code (`auto_map`) is refused unless `--trust-remote-code` was given. The model is
  built on the meta device from its config, which costs no memory;
- a fast tokenizer (the label path needs its offsets) with a chat template;
- the label path can label that template (`data.labels.probe_template`: a system message and two
  turns, training exactly the replies). Templates that rewrite earlier turns (Qwen3, Mistral
  v0.3) are labelled a sequence per reply, with a warning; only one that renders the conversation
  before a reply otherwise in its prompts is refused, with the fix, `--chat-template`;
- the facts `openft models list` shows: context length, parameters, dtype, size on disk, and a
  digest of the weights.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from openft.data.labels import ReplyNotAfterPrompt, probe_template
from openft.models.errors import ModelStoreError
from openft.models.facts import ModelFacts
from openft.models.parameters import parameter_count, weights_dtype

INDEX = "model.safetensors.index.json"
TEMPLATE_FIX = (
    "pass --chat-template FILE with a Jinja template whose add_generation_prompt output extends the "
    "conversation as it is written before an assistant message"
)


def check_model(folder: Path, name: str, source: str, trust_remote_code: bool) -> tuple[ModelFacts, list[str]]:
    """The facts of the model in `folder`, and warnings; ModelStoreError if openft cannot use it."""
    weights = weight_files(folder, name)
    for path in weights:
        _check_header(path, name)
    config = _config(folder, name, trust_remote_code)
    architecture = _architecture(config, name, trust_remote_code)
    tokenizer = _tokenizer(folder, name, trust_remote_code)
    warnings = _label_probe(tokenizer, name)
    context_length = getattr(config, "max_position_embeddings", None)
    if not context_length:
        raise ModelStoreError(f"{name}'s config has no max_position_embeddings: its context length is unknown.")
    facts = ModelFacts(
        source=source,
        architecture=architecture,
        parameters=parameter_count(folder),
        context_length=context_length,
        dtype=weights_dtype(folder),
        size_bytes=sum(path.stat().st_size for path in folder.rglob("*") if path.is_file()),
        digest=weights_digest(weights),
        trust_remote_code=trust_remote_code,
    )
    return facts, warnings


def weight_files(folder: Path, name: str) -> list[Path]:
    """The safetensors files transformers loads from `folder`: those its index names, or
    `model.safetensors`."""
    if not (folder / "config.json").is_file():
        raise ModelStoreError(f"{name} has no config.json: a model folder holds config.json, weights and a tokenizer.")
    if (folder / INDEX).is_file():
        files = sorted(set(json.loads((folder / INDEX).read_text())["weight_map"].values()))
        if missing := [file for file in files if not (folder / file).is_file()]:
            raise ModelStoreError(f"{name} is missing weight files its {INDEX} names: {', '.join(missing)}.")
        return [folder / file for file in files]
    if (folder / "model.safetensors").is_file():
        return [folder / "model.safetensors"]
    if any(folder.glob("*.bin")) or any(folder.glob("*.pt")):
        raise ModelStoreError(
            f"{name} has only pickle weights (.bin/.pt), which can run code when loaded: "
            "openft loads safetensors only (convert them with transformers' save_pretrained)."
        )
    raise ModelStoreError(f"{name} has no safetensors weights (model.safetensors or {INDEX}).")


def weights_digest(weights: list[Path]) -> str:
    """sha256 over the weight files' bytes, in name order."""
    digest = hashlib.sha256()
    for path in sorted(weights):
        with open(path, "rb") as f:
            while chunk := f.read(1 << 24):
                digest.update(chunk)
    return f"sha256:{digest.hexdigest()}"


def _check_header(path: Path, name: str) -> None:
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(path, "np"):
            pass
    except SafetensorError as e:
        raise ModelStoreError(f"{name}'s {path.name} is not a whole safetensors file ({e}).") from e


def _config(folder: Path, name: str, trust_remote_code: bool):
    from transformers import AutoConfig
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING

    raw = json.loads((folder / "config.json").read_text())
    model_type = raw.get("model_type")
    if model_type not in CONFIG_MAPPING and not trust_remote_code:
        if "auto_map" in raw:
            raise ModelStoreError(
                f"{name} needs its own Python code to load (auto_map in its config.json): pass "
                "--trust-remote-code if you trust that code, which then runs wherever openft loads the model."
            )
        raise ModelStoreError(f"{name} has model_type {model_type!r}, which this transformers does not know.")
    try:
        return AutoConfig.from_pretrained(folder, trust_remote_code=trust_remote_code)
    except Exception as e:
        raise ModelStoreError(f"{name}'s config.json does not load: {_first_line(e)}") from e


def _architecture(config, name: str, trust_remote_code: bool) -> str:
    """The causal-LM class the config builds, built on the meta device (no memory) to prove it."""
    import torch
    from transformers import AutoModelForCausalLM
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING

    remote = trust_remote_code and "AutoModelForCausalLM" in (getattr(config, "auto_map", None) or {})
    if type(config) not in MODEL_FOR_CAUSAL_LM_MAPPING and not remote:
        raise ModelStoreError(f"{name} is not a causal language model (model_type {config.model_type!r}).")
    try:
        with torch.device("meta"):
            model = AutoModelForCausalLM.from_config(config, trust_remote_code=trust_remote_code)
    except Exception as e:
        raise ModelStoreError(f"{name} cannot be built from its config: {_first_line(e)}") from e
    return type(model).__name__


def _tokenizer(folder: Path, name: str, trust_remote_code: bool):
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=trust_remote_code)
    except Exception as e:
        raise ModelStoreError(f"{name}'s tokenizer does not load: {_first_line(e)}") from e
    if not tokenizer.is_fast:
        raise ModelStoreError(f"{name} has no fast tokenizer (tokenizer.json), which openft's label path needs.")
    if not tokenizer.chat_template:
        raise ModelStoreError(
            f"{name} has no chat template (a base model, not an instruct one?): pass --chat-template FILE, "
            "a Jinja chat template such as the one of the model's instruct version."
        )
    return tokenizer


def _label_probe(tokenizer, name: str) -> list[str]:
    try:
        return probe_template(tokenizer)
    except ReplyNotAfterPrompt as e:
        raise ModelStoreError(
            f"{name}'s chat template renders a conversation otherwise with its generation prompt than "
            f"before a reply, so training cannot teach the model to continue the prompts it will be given: "
            f"{TEMPLATE_FIX}."
        ) from e
    except ValueError as e:
        raise ModelStoreError(f"openft cannot label {name}'s chat template for training ({e}): {TEMPLATE_FIX}.") from e
    except Exception as e:  # the template's own error (jinja2's TemplateError, raise_exception)
        raise ModelStoreError(
            f"{name}'s chat template fails on a system message and two turns ({_first_line(e)}): {TEMPLATE_FIX}."
        ) from e


def _first_line(error: Exception) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
