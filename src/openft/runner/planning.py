"""A job's memory plan (trainer/plan.py) on a device: the plan its base, its training file and its
hyperparameters need there. The API plans a job against the workers alive when it is created, a
worker against itself before it claims one, and again, for the spec, before it trains it."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from functools import lru_cache
from pathlib import Path

from openft.data.hyperparams import resolve_hyperparameters
from openft.settings import Settings
from openft.trainer.plan import Device, ModelShape, Plan, example_token_bound, plan
from openft.trainer.spec import MAX_LENGTH, Lora


class LongestLine:
    """Byte lines passed through, the longest one's length noted (an example's token bound)."""

    def __init__(self, lines: Iterable[bytes]):
        self.lines = lines
        self.longest = 0

    def __iter__(self) -> Iterator[bytes]:
        for line in self.lines:
            self.longest = max(self.longest, len(line))
            yield line

    @property
    def example_tokens(self) -> int:
        return example_token_bound(self.longest, MAX_LENGTH)


def qlora_choice(settings: Settings, hyperparameters: dict) -> bool | None:
    """The job's `qlora` hyperparameter (true: QLoRA; false: never), or else `OPENFT_TRAIN_QLORA`
    (true: QLoRA), or None: the planner's choice."""
    requested = hyperparameters.get("qlora", "auto")
    if requested != "auto":
        return requested
    return True if settings.train_qlora else None


def job_plan(
    settings: Settings,
    base: str,
    n_examples: int,
    example_tokens: int,
    hyperparameters: dict,
    device: Device,
    lora: Lora | None = None,
    method: str = "supervised",
) -> Plan | None:
    """The plan of a job on `device`; None if this host's model store lacks the base. A DPO
    batch runs each pair's two replies as two rows (trainer/dpo.py); its token bound, the
    longest line's, covers a pair's prompt and both replies, more than either row needs."""
    path = settings.models_dir / base
    if not (path / "config.json").exists():
        return None
    rows = resolve_hyperparameters(n_examples, hyperparameters, method).batch_size * (2 if method == "dpo" else 1)
    return plan(_shape(path), device, rows, example_tokens, lora, qlora_choice(settings, hyperparameters))


@lru_cache(maxsize=64)
def _shape(model_dir: Path) -> ModelShape:
    return ModelShape.of(model_dir)
