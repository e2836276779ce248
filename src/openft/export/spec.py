"""What one export reads: `ExportDetails`, what the service gathers when an export is created,
and `ExportSpec`, those details with one host's paths: the file the exporter writes and
`python -m openft.export spec.json` reads. No torch here: the server never imports torch.
(The formats and quantizations are wire types: protocol/exports.py.)"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

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


@dataclass(frozen=True)
class ExportDetails:
    """What an export is, wherever it runs: the service gathers it when the export is created
    (stored on its row), and the host that runs it adds its own paths (`spec`)."""

    format: str
    model: str  # the name exported: an ft: model, a checkpoint's name, or a base
    base_model: str  # the base's name in the model store
    adapter_key: str | None  # the LoRA adapter's key in the artifact storage; None for a base
    quantization: str | None  # gguf only
    folder_name: str  # the export's folder, and its tar's name: `<model>-<format>`
    mtime: int  # every tar entry's: the model's creation time
    card: dict[str, Any]
    training_config: dict[str, Any] | None
    system_message: str | None

    def spec(self, base_path: Path, adapter_path: Path | None, output_dir: Path, threads: int | None) -> ExportSpec:
        return ExportSpec(
            format=self.format,
            model=self.model,
            base_model=self.base_model,
            base_model_path=str(base_path),
            adapter_path=str(adapter_path) if adapter_path else None,
            output_dir=str(output_dir),
            quantization=self.quantization,
            card=self.card,
            training_config=self.training_config,
            system_message=self.system_message,
            threads=threads,
        )

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> ExportDetails:
        return cls(**data)
