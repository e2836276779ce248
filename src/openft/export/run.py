"""One export, as the `python -m openft.export spec.json` process runs it: everything is written
into a hidden staging folder next to the output, which is renamed into place at the end, so
the output folder is complete or absent; a failure removes the staging folder.

    peft     adapter_config.json, adapter_model.safetensors (peft's files, as trained),
             training_config.json, README.md
    merged   config.json, model.safetensors, tokenizer files + chat template, README.md
    gguf     <name>-<quantization>.gguf, Modelfile, README.md

Nothing in an export depends on when or where it ran except the card's `exported_at`: the same
fine-tune exports to the same bytes.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

from openft.cores import usable_cores
from openft.export.card import model_card
from openft.export.spec import ExportError, ExportSpec, file_stem

# peft's own README is a template of empty sections; the card replaces it.
ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")


def run(spec: ExportSpec) -> Path:
    output = Path(spec.output_dir)
    if output.exists():
        raise ExportError(f"{output} already exists; choose another output path or remove it.")
    output.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=output.parent, prefix=f".{output.name}.", suffix=".partial"))
    try:
        loading = _write(spec, staging)
        card = {**(spec.card or {}), "model": spec.model, "base_model": spec.base_model, "format": spec.format}
        (staging / "README.md").write_text(model_card({"quantization": spec.quantization, **card}, loading))
        os.chmod(staging, 0o755)  # mkdtemp's 0700 would keep the export from other users
        os.rename(staging, output)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return output


def _write(spec: ExportSpec, out: Path) -> dict[str, str]:
    """Writes the format's files into `out`; returns what the card's loading example names."""
    base_path = Path(spec.base_model_path)
    adapter = Path(spec.adapter_path) if spec.adapter_path else None
    if spec.format == "peft":
        if adapter is None:
            raise ExportError(f"{spec.model} is a base model: it has no adapter to export as peft.")
        _write_adapter(spec, adapter, out)
        return {"base": spec.base_model}
    import torch

    # torch's default is every core of the machine, whatever the container's CPU quota.
    torch.set_num_threads(spec.threads or usable_cores())
    from openft.export.merge import merged_model, write_merged

    model = merged_model(base_path, adapter)
    if spec.format == "merged":
        write_merged(model, base_path, out)
        return {}
    from openft.export.gguf_file import write_gguf
    from openft.settings import Settings

    gguf_name = f"{file_stem(spec.model)}-{spec.quantization}.gguf"
    write_gguf(model, base_path, out / gguf_name, spec.quantization, spec.model, Settings().llama_cpp_dir)
    (out / "Modelfile").write_text(_modelfile(spec, base_path, gguf_name))
    return {"gguf": gguf_name, "ollama": file_stem(spec.model).lower()}


def _write_adapter(spec: ExportSpec, adapter: Path, out: Path) -> None:
    """peft's files as the trainer saved them; the config names the base by its openft name
    rather than by the training host's path to it."""
    config = json.loads((adapter / "adapter_config.json").read_text())
    config["base_model_name_or_path"] = spec.base_model
    (out / "adapter_config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    shutil.copyfile(adapter / "adapter_model.safetensors", out / "adapter_model.safetensors")
    if spec.training_config is not None:
        (out / "training_config.json").write_text(json.dumps(spec.training_config, indent=2) + "\n")


def _modelfile(spec: ExportSpec, base_path: Path, gguf_name: str) -> str:
    from transformers import AutoConfig, AutoTokenizer

    from openft.export.modelfile import chat_parts, modelfile

    tokenizer = AutoTokenizer.from_pretrained(base_path)
    parts = chat_parts(lambda chat: tokenizer.apply_chat_template(chat, tokenize=False, add_generation_prompt=True))
    eos = AutoConfig.from_pretrained(base_path).eos_token_id
    ids = [tokenizer.eos_token_id, *(eos if isinstance(eos, list) else [eos])]
    stops = list(dict.fromkeys(tokenizer.convert_ids_to_tokens(i) for i in ids if i is not None))
    return modelfile(gguf_name, spec.model, parts, stops, spec.system_message)
