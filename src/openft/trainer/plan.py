"""Memory planning: how a base model trains on a device, decided from their sizes before anything
loads, so that a job that would run out of memory is never started (nor accepted, nor claimed).

A plan is the first of these that fits the device's budget, in order of preference: exact and
fast, exact and slower, then lossy:

1. LoRA on the base in the device's compute dtype (`hardware.compute_dtype`: bf16 on CUDA);
2. the same with gradient checkpointing (each decoder layer keeps only its input and recomputes
   the rest in the backward pass: the same gradients, about a third more compute);
3. QLoRA: the base's linear layers in 4-bit NF4 (bitsandbytes, bf16 compute), the rest in fp32
   (peft's `prepare_model_for_kbit_training` upcasts it), without and then with checkpointing.
   Only on CUDA, with bitsandbytes installed. A job can ask for it (`qlora: true`) or forbid it
   (`qlora: false`); `OPENFT_TRAIN_QLORA=true` asks for it for every job.

The estimate is the peak of one training step, in bytes:
- weights: parameters (from the safetensors headers) x their bytes;
- adapters: LoRA parameters x 16 (fp32 weight, gradient, and AdamW's two moments);
- activations: what the forward pass keeps for the backward pass, per token and decoder layer,
  a linear function of the hidden, intermediate and key/value widths whose coefficients were
  measured on this trainer (saved-tensor hooks on one training step, bf16 and fp32, SDPA and
  eager attention; `tests/test_plan.py` measures them again), plus one layer's worth of
  gradients in flight; with checkpointing, each layer's input plus two layers' worth (the layer
  being recomputed, and its gradients);
- the LM head: 12 bytes per trained position and vocabulary entry (the logits, their fp32 copy
  and log-softmax, and its gradient); every position of the batch is counted as trained;
- overhead: the process (Python, torch, the tokenizer: 0.4 GiB measured on CPU) or the CUDA
  context and workspaces.
The budget is 90% of the device's memory (the caching allocator fragments; other processes
share a CPU's RAM).

The batch planned for is the largest the job can make: `batch_size` rows of its longest example.
No tokenizer is loaded to plan (the API process plans at create time without one), so an
example's length is bounded by its line's bytes: a byte-level BPE or byte-fallback token covers
at least one byte, and a chat template adds a few tokens per message, fewer than the message's
JSON keys take (`example_token_bound`). `openft data check` prints the same plan.

No torch here: the API process, the runner and the data check plan with this module.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

from openft.models.parameters import parameter_count
from openft.trainer.spec import EAGER_ATTENTION_ELEMENTS, Lora

GiB = 2**30
BUDGET_SHARE = 0.9  # of a device's memory that one job plans to use
OVERHEAD = {"cpu": int(0.5 * GiB), "cuda": 1 * GiB}  # the process; the CUDA context and workspaces
TEMPLATE_TOKENS = 256  # a chat template's own tokens in one example, at most (system prompt, BOS, headers)
ADAPTER_BYTES = 16  # per LoRA parameter: fp32 weight, gradient, AdamW's exp_avg and exp_avg_sq
HEAD_BYTES = 12  # per trained position and vocabulary entry, at the peak
HEAD_SAVED_BYTES = 4  # of which the fp32 log-softmax is kept for the backward pass
NF4_BYTES = 0.516  # per 4-bit parameter: 4 bits, an 8-bit absmax per 64, an fp32 constant per 256 blocks
# Eager attention's probabilities, per head and key, per token and layer: fp32, plus a bf16 copy
# in a bf16 model.
EAGER_ATTENTION_BYTES = {"bfloat16": 6, "float32": 4}
# Bytes kept for the backward pass per token and decoder layer, by the base's dtype, as
# (hidden, intermediate, key/value width, constant) coefficients. Fitted on this trainer's LoRA
# step (peft casts each adapted layer's input to the adapters' fp32, hence bf16's larger hidden
# term); QLoRA's fp32 norms and embeddings make its residual stream fp32.
ACTIVATION_COEFFICIENTS = {
    "bfloat16": (36, 10, 4.5, 280),
    "float32": (24, 16, 9, 310),
}
DTYPE_BYTES = {"bfloat16": 2, "float32": 4}
LORA_PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")

Method = Literal["lora", "qlora"]


@dataclass(frozen=True)
class ModelShape:
    """What memory a base model needs, read from its folder without loading it."""

    layers: int
    hidden: int
    intermediate: int
    heads: int
    kv_heads: int
    head_dim: int
    vocab: int
    parameters: int

    @classmethod
    def of(cls, model_dir: Path) -> ModelShape:
        """From `config.json` (a multimodal config's `text_config`) and the safetensors headers."""
        config = json.loads((Path(model_dir) / "config.json").read_text())
        config = config.get("text_config", config)
        heads = config["num_attention_heads"]
        return cls(
            layers=config["num_hidden_layers"],
            hidden=config["hidden_size"],
            intermediate=config["intermediate_size"],
            heads=heads,
            kv_heads=config.get("num_key_value_heads") or heads,
            head_dim=config.get("head_dim") or config["hidden_size"] // heads,
            vocab=config["vocab_size"],
            parameters=parameter_count(Path(model_dir)),
        )

    def projections(self) -> dict[str, tuple[int, int]]:
        """(inputs, outputs) of each linear layer of a decoder layer."""
        q, kv, h, i = self.heads * self.head_dim, self.kv_heads * self.head_dim, self.hidden, self.intermediate
        return {
            "q_proj": (h, q),
            "k_proj": (h, kv),
            "v_proj": (h, kv),
            "o_proj": (q, h),
            "gate_proj": (h, i),
            "up_proj": (h, i),
            "down_proj": (i, h),
        }

    def linear_parameters(self) -> int:
        """Parameters in the decoder layers' linear layers: what QLoRA stores in 4 bits."""
        return self.layers * sum(n_in * n_out for n_in, n_out in self.projections().values())

    def lora_parameters(self, lora: Lora) -> int:
        targets = lora.target_modules
        every = targets == "all-linear"
        adapted = [shape for name, shape in self.projections().items() if every or name in targets]
        return self.layers * lora.r * sum(n_in + n_out for n_in, n_out in adapted)


@dataclass(frozen=True)
class Device:
    """Where a job trains, as a worker advertises it."""

    kind: Literal["cpu", "cuda"]
    name: str  # "NVIDIA H100 80GB HBM3", or the CPU's model name
    memory: int  # bytes one training process may use: RAM, or one GPU's memory
    dtype: str  # the base's compute dtype there (`hardware.compute_dtype`)
    qlora: bool  # CUDA with bitsandbytes installed

    @property
    def budget(self) -> int:
        return int(self.memory * BUDGET_SHARE)


@dataclass(frozen=True)
class Plan:
    device: str  # "cpu" or "cuda"
    dtype: str  # the frozen base's dtype ("bfloat16", "float32"); QLoRA's compute dtype
    method: Method
    gradient_checkpointing: bool
    estimate: int  # bytes at the peak of a training step
    budget: int  # bytes the device gives a job
    parts: dict[str, int]  # the estimate by part: weights, adapters, activations, head, overhead
    batch: tuple[int, int]  # (rows, tokens per row) planned for
    problem: str | None = None  # why it cannot run there, if it cannot

    @property
    def fits(self) -> bool:
        return self.problem is None

    def label(self) -> str:
        """'bf16 LoRA with gradient checkpointing on cuda'"""
        precision = "QLoRA (4-bit NF4 base)" if self.method == "qlora" else f"{_short(self.dtype)} LoRA"
        checkpointing = " with gradient checkpointing" if self.gradient_checkpointing else ""
        return f"{precision}{checkpointing} on {self.device}"

    def describe(self) -> str:
        """'bf16 LoRA with gradient checkpointing on cuda: ~21.3 GiB of 72.0 GiB'"""
        return f"{self.label()}: ~{gib(self.estimate)} of {gib(self.budget)}"

    def to_dict(self) -> dict:
        return {**asdict(self), "batch": list(self.batch)}

    @classmethod
    def from_dict(cls, data: dict) -> Plan:
        return cls(**{**data, "batch": tuple(data["batch"])})


def plan(
    shape: ModelShape, device: Device, rows: int, tokens: int, lora: Lora | None = None, qlora: bool | None = None
) -> Plan:
    """The first plan that fits `device` for batches of `rows` x `tokens` (module docstring);
    if none does, the smallest, with its `problem`. `qlora`: None lets the planner choose, True
    requires QLoRA, False forbids it."""
    lora = lora or Lora()
    options: list[tuple[Method, bool]] = []
    if qlora is not True:
        options += [("lora", False), ("lora", True)]
    if qlora is not False and device.qlora:
        options += [("qlora", False), ("qlora", True)]
    if not options:  # QLoRA required where it cannot run
        smallest = estimate(shape, device, rows, tokens, lora, "qlora", True)
        need = "a CUDA device" if device.kind != "cuda" else "bitsandbytes (pip install bitsandbytes)"
        return _with_problem(smallest, f"QLoRA needs {need}; this {device.kind} worker has neither")
    plans = [estimate(shape, device, rows, tokens, lora, method, checkpointing) for method, checkpointing in options]
    for candidate in plans:
        if candidate.estimate <= candidate.budget:
            return candidate
    smallest = min(plans, key=lambda p: p.estimate)
    return _with_problem(
        smallest,
        f"it needs ~{gib(smallest.estimate)} at the least ({smallest.label()}, "
        f"batches of {rows} x {tokens:,} tokens), more than the {gib(smallest.budget)} "
        f"{device.kind} worker ({device.name}) gives a job",
    )


def estimate(
    shape: ModelShape, device: Device, rows: int, tokens: int, lora: Lora, method: Method, checkpointing: bool
) -> Plan:
    """One plan's peak memory (module docstring), whether it fits or not."""
    dtype = "bfloat16" if method == "qlora" else device.dtype
    batch_tokens = rows * tokens
    if method == "qlora":
        linear = shape.linear_parameters()
        weights = linear * NF4_BYTES + (shape.parameters - linear) * DTYPE_BYTES["float32"]
        stream_dtype = "float32"  # norms and embeddings upcast: the residual stream is fp32
    else:
        weights = shape.parameters * DTYPE_BYTES[dtype]
        stream_dtype = dtype
    layer = layer_activations(shape, stream_dtype, device.kind, rows, tokens)
    if checkpointing:
        activations = shape.layers * batch_tokens * shape.hidden * DTYPE_BYTES[stream_dtype] + 2 * layer
    else:
        activations = (shape.layers + 1) * layer
    parts = {
        "weights": int(weights),
        "adapters": shape.lora_parameters(lora) * ADAPTER_BYTES,
        "activations": int(activations),
        "head": HEAD_BYTES * batch_tokens * shape.vocab,
        "overhead": OVERHEAD[device.kind],
    }
    return Plan(
        device=device.kind,
        dtype=dtype,
        method=method,
        gradient_checkpointing=checkpointing,
        estimate=sum(parts.values()),
        budget=device.budget,
        parts=parts,
        batch=(rows, tokens),
    )


def layer_activations(shape: ModelShape, dtype: str, device_kind: str, rows: int, tokens: int) -> int:
    """Bytes one decoder layer keeps for the backward pass, for a batch of `rows` x `tokens`,
    with its residual stream in `dtype` (module docstring)."""
    h, i, kv, constant = ACTIVATION_COEFFICIENTS[dtype]
    per_token = h * shape.hidden + i * shape.intermediate + kv * shape.kv_heads * shape.head_dim + constant
    if device_kind == "cpu" and rows * tokens * tokens <= EAGER_ATTENTION_ELEMENTS:  # as the trainer attends
        per_token += EAGER_ATTENTION_BYTES[dtype] * shape.heads * tokens
    return int(per_token * rows * tokens)


def memory_needed(estimate: int) -> int:
    """The device memory whose budget holds `estimate` bytes."""
    return math.ceil(estimate / BUDGET_SHARE)


def example_token_bound(line_bytes: int, max_length: int) -> int:
    """At most how many tokens an example whose JSONL line has `line_bytes` bytes renders to,
    truncated to `max_length` (module docstring)."""
    return min(max_length, line_bytes + TEMPLATE_TOKENS)


def gib(n: int) -> str:
    return f"{n / GiB:.1f} GiB"


def _short(dtype: str) -> str:
    return {"bfloat16": "bf16", "float32": "fp32"}.get(dtype, dtype)


def _with_problem(p: Plan, problem: str) -> Plan:
    return Plan(**{**asdict(p), "problem": problem})
