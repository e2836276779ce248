"""The README model card of an export: what the model is, how it was trained and how to load it,
from the facts the service gathers (`ExportSpec.card`). Pure text; the one timestamp in an export
is the card's `exported_at`."""

from __future__ import annotations

import json
from typing import Any

_LOADING = {
    "peft": """```python
from peft import PeftModel
from transformers import AutoModelForCausalLM, AutoTokenizer

base = AutoModelForCausalLM.from_pretrained("path/to/{base}")  # openft models export {base} --format merged
model = PeftModel.from_pretrained(base, "path/to/this/folder")
```

The adapter was trained on openft's copy of `{base}`; load it on that copy (exported with the
command above) to get exactly the served fine-tune.""",
    "merged": """```python
from transformers import AutoModelForCausalLM, AutoTokenizer

model = AutoModelForCausalLM.from_pretrained("path/to/this/folder")
tokenizer = AutoTokenizer.from_pretrained("path/to/this/folder")  # with the chat template
```

vLLM: `vllm serve path/to/this/folder`.""",
    "gguf": """```bash
ollama create {ollama} -f Modelfile && ollama run {ollama}
llama-cli -m {gguf} -cnv          # llama.cpp, with the chat template in the file
```""",
}


def model_card(card: dict[str, Any], loading: dict[str, str]) -> str:
    """The README for an export described by `card`; `loading` fills the how-to-load example."""
    tags = ["openft", card["format"]] + (["lora"] if card["format"] == "peft" else [])
    front = [
        "---",
        f"base_model: {card['base_model']}",
        *(["library_name: peft"] if card["format"] == "peft" else []),
        f"tags: [{', '.join(tags)}]",
        "---",
    ]
    lines = [*front, "", f"# {card['model']}", ""]
    job = card.get("job")
    if job:
        lines.append(
            f"A LoRA fine-tune of `{card['base_model']}` (requested as `{job['model']}`), trained by openft "
            f"job `{job['id']}`{_checkpoint(card)}, exported as `{card['format']}`"
            + (f" ({card['quantization']})." if card.get("quantization") else ".")
        )
    else:
        lines.append(f"The base model `{card['base_model']}` of openft's model store, exported as `{card['format']}`.")
    lines += ["", "## Loading", "", _LOADING[card["format"]].format(**loading), ""]
    if job:
        lines += ["## Training", ""]
        for label, key in (("Training file", "training_file"), ("Validation file", "validation_file")):
            if job.get(key):
                lines.append(f"- {label}: {_file(job[key])}")
        lines += [
            f"- Hyperparameters: `{json.dumps(job['hyperparameters'], sort_keys=True)}`",
            f"- Seed: {job['seed']}",
            f"- Trained tokens: {job.get('trained_tokens')}",
            f"- Final metrics: `{json.dumps(card.get('metrics'), sort_keys=True)}`",
            "- The resolved training config is `training_config.json`" if card["format"] == "peft" else "",
            "",
        ]
    lines += [
        "## Provenance",
        "",
        f"- openft {card['openft_version']}",
        f"- exported_at: {card['exported_at']}",
        "",
    ]
    return "\n".join(line for line in lines if line is not None)


def _checkpoint(card: dict[str, Any]) -> str:
    step = card.get("checkpoint_step")
    return f", checkpoint at step {step}" if step is not None else ""


def _file(file: dict[str, Any]) -> str:
    if file.get("sha256") is None:
        return f"`{file['id']}` (no longer stored)"
    return f"`{file['id']}` ({file['filename']}, {file['bytes']} bytes, sha256 `{file['sha256']}`)"
