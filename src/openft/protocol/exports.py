"""Export wire types: `POST /v1/openft/exports` and the export object it returns. openft's own
resource (OpenAI has no exports), so it lives under /v1/openft/ and its `object` is
"openft.export"."""

from typing import Literal

from pydantic import BaseModel, ConfigDict

Format = Literal["peft", "merged", "gguf"]
# What the gguf package writes without llama.cpp: float types, and the block quantizations its
# pure-Python `gguf.quants` implements (K-quants need llama.cpp's `llama-quantize`).
Quantization = Literal["f32", "f16", "bf16", "q8_0", "q5_1", "q5_0", "q4_1", "q4_0"]
ExportStatus = Literal["queued", "running", "succeeded", "failed"]


class ExportCreateParams(BaseModel):
    """Body of POST /v1/openft/exports."""

    model_config = ConfigDict(extra="forbid")

    model: str
    """An `ft:` model, one of its checkpoints (`ft:…:ckpt-step-N` or its `ftckpt_…` id), or a base."""
    format: Format
    """peft (the adapter), merged (a transformers folder) or gguf (llama.cpp, Ollama)."""
    quantization: Quantization | None = None
    """gguf only: the weights' type; default f16."""


class ExportErrorBody(BaseModel):
    code: str
    """`unsupported_export` (the model cannot have this format) or `export_failed`."""
    message: str


class Export(BaseModel):
    id: str
    """"export-…"."""
    object: Literal["openft.export"] = "openft.export"
    created_at: int
    """Unix seconds."""
    model: str
    """The name the export was asked for."""
    format: Format
    quantization: Quantization | None
    """gguf only: the weights' type."""
    status: ExportStatus
    """queued → running → succeeded | failed; an export whose process was killed runs again."""
    finished_at: int | None
    error: ExportErrorBody | None
    filename: str | None
    """`<name>-<format>.tar`, once succeeded: what `GET /v1/openft/exports/{id}/content` sends."""
    bytes: int | None
    """The tar's size, once succeeded."""


class ExportDeleted(BaseModel):
    id: str
    object: Literal["openft.export.deleted"] = "openft.export.deleted"
    deleted: bool
