"""The trainer's spec: every setting one training run reads, with the recipe's numbers defined once.

The runner resolves a job into a `TrainSpec` and writes it as `spec.json` (`runner/spec.py`);
`python -m openft.trainer spec.json` reads it back (`trainer/sft.py`) and saves it, resolved,
next to the adapter as `training_config.json`. A field the file leaves out takes the recipe's
default below; a key the spec does not know fails the run, naming it. The data check (the
context it announces) and the training benchmark (the adapters it times) read the same numbers.

No torch here: the runner and the data check import this module, and neither loads torch.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

# Examples longer than this are truncated (announced by `openft data check`).
MAX_LENGTH = 2048
# LoRA learning rate that learning_rate_multiplier=1 means, by the base model's size.
# Measured on SmolLM2-135M, LoRA r=8, 20 examples x 5 epochs at batch 1: 1e-4..1e-3 all taught a
# fixed reply style on 8/8 held-out prompts; above ~1e-3 the model parrots training answers, at
# 1e-4 some replies are only the style. QLoRA's recipe uses the same 2e-4 up to 13B parameters
# and halves it for 33B and larger. "auto" doubles it below 100 examples (data/hyperparams.py).
BASE_LEARNING_RATE = 2e-4
LARGE_MODEL_PARAMETERS = 20e9
LARGE_MODEL_LEARNING_RATE = 1e-4
WARMUP_RATIO = 0.1  # of the steps, with a linear rise before the linear decay
EVAL_EXAMPLES = 32  # validation examples behind each periodic valid_loss (the last step's uses all)
# On the CPU, batches up to this many rows x tokens^2 attend eagerly, larger ones with SDPA
# (`sft.use_attention_for`; the memory plan counts eager attention's probabilities).
EAGER_ATTENTION_ELEMENTS = 8 * 256 * 256
# DPO (trainer/dpo.py): the weight of the SFT term on the preferred reply added to the DPO loss
# (RPO). 1.0, as in TRL's ["sigmoid", "sft"]: the measurement behind it is in data/hyperparams.py.
SFT_WEIGHT = 1.0


def base_learning_rate(parameters: int) -> float:
    """The learning rate that learning_rate_multiplier=1 means for a base of this many parameters."""
    return LARGE_MODEL_LEARNING_RATE if parameters >= LARGE_MODEL_PARAMETERS else BASE_LEARNING_RATE


@dataclass(frozen=True)
class Lora:
    """The adapters trained: rank 8 on every linear layer, scaled by alpha / r = 2, no dropout."""

    r: int = 8
    alpha: int = 16
    dropout: float = 0.0
    target_modules: str | list[str] = "all-linear"


def lora_config(lora: Lora):
    """peft's `LoraConfig` for `lora` (peft is imported here, by the processes that train)."""
    from peft import LoraConfig

    return LoraConfig(
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=lora.target_modules,
        task_type="CAUSAL_LM",
    )


@dataclass(frozen=True)
class TrainSpec:
    base_model_path: str  # a model folder: safetensors weights, tokenizer, chat template
    training_file: str  # chat JSONL, validated upstream
    output_dir: str  # gets checkpoints/step-N/ and adapter/
    validation_file: str | None = None
    n_epochs: int = 3
    batch_size: int = 1
    learning_rate: float = BASE_LEARNING_RATE  # the base rate x learning_rate_multiplier
    seed: int = 42
    max_length: int = MAX_LENGTH
    # CPU threads: a number, or None for this host's share of its cores (`openft.cores`), kept
    # up to date between steps with the other training and serving processes in `cores_dir`
    threads: int | None = None
    cores_dir: str | None = None
    # The memory plan (trainer/plan.py) the trainer carries out:
    base_dtype: str = "auto"  # the frozen base's weights: "auto" (hardware.compute_dtype), "float32", "bfloat16"
    gradient_checkpointing: bool = False
    quantization: str = "none"  # "nf4": QLoRA, the base's linear layers in 4 bits (bitsandbytes, CUDA)
    # An adapter to go on training (an `ft:` model's): its LoRA config and weights, not fresh ones
    init_adapter: str | None = None
    # "supervised" (trainer/sft.py) or "dpo" (trainer/dpo.py: preference pairs, the reference the
    # starting model, `beta` and the SFT term's `sft_weight` in its loss)
    method: str = "supervised"
    beta: float = 0.1
    sft_weight: float = SFT_WEIGHT
    warmup_ratio: float = WARMUP_RATIO
    eval_every: int | None = None  # steps between valid_loss reports; None: about 10 per run
    eval_examples: int = EVAL_EXAMPLES
    lora: Lora = field(default_factory=Lora)

    @classmethod
    def read(cls, path: Path) -> TrainSpec:
        fields = json.loads(Path(path).read_text())
        return cls(**{**fields, "lora": Lora(**fields.get("lora", {}))})

    def write(self, path: Path) -> None:
        Path(path).write_text(json.dumps(asdict(self), indent=2))
