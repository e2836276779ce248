"""What one export reads: the formats, the GGUF quantizations, and `ExportSpec`, the file the
service writes and `python -m openft.export spec.json` reads. No torch here: the service (in the
server's process) builds specs, and the server never imports torch."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

Format = Literal["peft", "merged", "gguf"]
FORMATS: tuple[str, ...] = ("peft", "merged", "gguf")
# What the gguf package writes without llama.cpp: float types, and the block quantizations its
# pure-Python `gguf.quants` implements (K-quants need llama.cpp's `llama-quantize`).
Quantization = Literal["f32", "f16", "bf16", "q8_0", "q5_1", "q5_0", "q4_1", "q4_0"]
QUANTIZATIONS: tuple[str, ...] = ("f32", "f16", "bf16", "q8_0", "q5_1", "q5_0", "q4_1", "q4_0")
DEFAULT_QUANTIZATION = "f16"


class ExportError(Exception):
    """An export the model cannot have (an architecture or tokenizer the GGUF writer does not
    know): the message is for the user, and nothing is left behind."""


def file_stem(model: str) -> str:
    """A file name for `model`: ':' and other characters unsafe in names become '-'."""
    return "".join(c if c.isalnum() or c in "-_." else "-" for c in model).strip("-.") or "model"


@dataclass(frozen=True)
class ExportSpec:
    format: str
    model: str  # the name exported: an ft: model, a checkpoint's name, or a base
    base_model: str  # the base's name in the model store
    base_model_path: str  # its folder: safetensors weights, tokenizer, chat template
    adapter_path: str | None  # the LoRA adapter (peft's files) on this host; None for a base
    output_dir: str  # created whole by a rename; must not exist
    quantization: str | None = None  # gguf only
    # README facts (card.py): the job, its files' digests, hyperparameters, final metrics, versions
    card: dict[str, Any] | None = None
    training_config: dict[str, Any] | None = None  # the run's resolved config, without host paths
    system_message: str | None = None  # the training file's, for the Modelfile's commented SYSTEM
    threads: int | None = None

    @classmethod
    def read(cls, path: Path) -> ExportSpec:
        return cls(**json.loads(Path(path).read_text()))

    def write(self, path: Path) -> None:
        Path(path).write_text(json.dumps(asdict(self), indent=2))
