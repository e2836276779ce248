"""The transformers + peft engine (CPU or one GPU), for bases the batched decoder does not run
(`OPENFT_ENGINE=hf` serves every base with it).

One copy of each base model is loaded (local.py); fine-tunes are LoRA adapters attached to it on
demand and evicted least-recently-used. An adapter is named by its key in the artifact storage
and fetched to this host (once, into the cache dir) the first time it is needed.

Generations are decoded in static batches by one scheduler thread: generations that arrive
while a batch runs wait for it to end, then the waiting ones for the same base model (up to
`MAX_BATCH`, and up to `MAX_LOADED_ADAPTERS` different adapters) are decoded together: one
left-padded prefill, then KV-cached steps. Rows of different adapters run in one forward pass
(peft's `adapter_names`). The batch ends when every row is done.
"""

import time
import warnings
from collections import OrderedDict, deque
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM, DynamicCache

from openft.inference.engine import MAX_BATCH, MAX_LOADED_ADAPTERS
from openft.inference.local import LoadedBase, LocalEngine
from openft.inference.rows import Generation, Row

GATHER_SECONDS = 0.01  # how long a new batch waits for generations sent at the same moment

# peft 0.21 still reads the deprecated `is_gradient_checkpointing`, which warns on every adapter load.
warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)


class PeftBase(LoadedBase):
    """A base model in transformers, with peft's LoRA adapters attached on demand."""

    def __init__(self, path: Path):
        super().__init__(path)
        self.model = AutoModelForCausalLM.from_pretrained(path, dtype=self.dtype, trust_remote_code=self.remote_code)
        self.model = self.model.to(self.device).eval()
        self.peft: PeftModel | None = None
        self.adapters: OrderedDict[str, str] = OrderedDict()  # adapter dir -> adapter name
        self.adapters_loaded = 0
        self.pad_id = (
            self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.tokenizer.eos_token_id
        )

    @contextmanager
    def selected(self, adapter_dirs: list[str | None]) -> Iterator[tuple[object, dict]]:
        """The module to run for a batch, and the extra forward arguments, with each row's
        adapter in effect for the whole batch (toggling peft's adapters walks every LoRA layer,
        too slow to do per token): the base model alone, one adapter set active, or, for rows of
        different adapters, peft's per-row `adapter_names`."""
        distinct = set(adapter_dirs)
        if distinct == {None}:
            if self.peft is None:
                yield self.model, {}
            else:
                with self.peft.disable_adapter():
                    yield self.peft, {}
            return
        names = {adapter_dir: self._load(adapter_dir) for adapter_dir in distinct if adapter_dir is not None}
        if len(distinct) == 1:
            self.peft.set_adapter(names[adapter_dirs[0]])
            yield self.peft, {}
            return
        yield self.peft, {"adapter_names": [names[d] if d else "__base__" for d in adapter_dirs]}

    def _load(self, adapter_dir: str) -> str:
        name = self.adapters.get(adapter_dir)
        if name is None:
            self.adapters_loaded += 1
            name = f"adapter{self.adapters_loaded}"
            if self.peft is None:
                self.peft = PeftModel.from_pretrained(self.model, adapter_dir, adapter_name=name).eval()
            else:
                self.peft.load_adapter(adapter_dir, adapter_name=name)
            self.adapters[adapter_dir] = name
            if len(self.adapters) > MAX_LOADED_ADAPTERS:
                _, evicted = self.adapters.popitem(last=False)
                self.peft.delete_adapter(evicted)
        self.adapters.move_to_end(adapter_dir)
        return name


class HFEngine(LocalEngine):
    def _load(self, path: Path) -> PeftBase:
        return PeftBase(path)

    def _schedule(self, incoming) -> None:
        waiting: deque[Generation] = deque()
        while True:
            if not waiting:
                waiting.append(self._next(incoming))
                time.sleep(GATHER_SECONDS)
            self._use_cores(True)
            while not incoming.empty():
                waiting.append(incoming.get_nowait())
            batch = self._next_batch(waiting)
            try:
                with torch.inference_mode():
                    self._decode(batch)
            except BaseException as error:  # every caller hears of it; the scheduler goes on
                for generation in batch:
                    generation.fail(error)

    @staticmethod
    def _next_batch(waiting: deque[Generation]) -> list[Generation]:
        """The oldest generation and the waiting ones that can share its batch (same base model)."""
        first = waiting.popleft()
        batch, adapters, rest = [first], {first.model.adapter_key}, deque()
        while waiting:
            generation = waiting.popleft()
            fits = (
                generation.model.base_model == first.model.base_model
                and len(batch) < MAX_BATCH
                and (generation.model.adapter_key in adapters or len(adapters) < MAX_LOADED_ADAPTERS)
            )
            if fits:
                batch.append(generation)
                adapters.add(generation.model.adapter_key)
            else:
                rest.append(generation)
        waiting.extend(rest)
        return batch

    def _decode(self, batch: list[Generation]) -> None:
        base = self._base(batch[0].model.base_model)
        prompts = [base.prompt_ids(generation.prompt) for generation in batch]
        rows = [Row(generation, base, prompt) for generation, prompt in zip(batch, prompts)]
        adapters = [self._adapter_dir(generation.model) for generation in batch]
        width = max(map(len, prompts))
        input_ids = torch.tensor([[base.pad_id] * (width - len(p)) + p for p in prompts], device=base.device)
        mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts], device=base.device)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        cache = DynamicCache()
        with base.selected(adapters) as (module, extra):
            while any(row.active for row in rows):
                logits = module(
                    input_ids=input_ids,
                    attention_mask=mask,
                    position_ids=positions,
                    cache=cache,
                    use_cache=True,
                    **extra,
                ).logits[:, -1]
                tokens = [row.step(logits[n]) if row.active else base.pad_id for n, row in enumerate(rows)]
                input_ids = torch.tensor(tokens, device=base.device)[:, None]
                mask = torch.cat([mask, mask.new_ones((len(rows), 1))], dim=1)
                positions = positions[:, -1:] + 1
        for row in rows:
            row.close()
