"""What openft knows about a base model, written next to its weights as `openft.json`.

The facts are checked once, when the model is added (models/checks.py), and kept twice: in the
model's row (what `openft models list` and the API show, shared by every host of a fleet) and
in the folder itself, so that a process holding only the folder (a worker on another host, a
data dir that links to a shared model store) registers it without checking it again, and a
folder without the file is known to be unfinished.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

FACTS_FILE = "openft.json"


@dataclass(frozen=True)
class ModelFacts:
    source: str  # what it was added from: a folder, a .gguf file or a hub id
    architecture: str  # the transformers class, "LlamaForCausalLM"
    parameters: int
    context_length: int
    dtype: str  # of the stored weights, "bfloat16"
    size_bytes: int  # the folder on disk
    digest: str  # "sha256:…" of the weight files, in name order
    trust_remote_code: bool  # the model's own code runs when it loads (`--trust-remote-code`)


def read_facts(folder: Path) -> ModelFacts | None:
    """The facts of a finished model folder; None when the folder or its facts are missing."""
    try:
        return ModelFacts(**json.loads((folder / FACTS_FILE).read_text()))
    except FileNotFoundError:
        return None


def write_facts(folder: Path, facts: ModelFacts) -> None:
    """Written whole or not at all: a reader never sees half a file."""
    partial = folder / f".{FACTS_FILE}.part"
    partial.write_text(json.dumps(asdict(facts), indent=2))
    os.replace(partial, folder / FACTS_FILE)


def trusts_remote_code(folder: Path) -> bool:
    """Whether the model in `folder` was added with --trust-remote-code: what every loader of it
    (the trainer, the engines, the data check) passes to transformers as `trust_remote_code`."""
    facts = read_facts(folder)
    return bool(facts and facts.trust_remote_code)
