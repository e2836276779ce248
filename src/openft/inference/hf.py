"""A base model in transformers + peft, for the architectures openft's decoder does not implement
(`OPENFT_ENGINE=hf`: for every base). It sits behind the same calls as the decoder (decoder.py),
so the engine's one scheduler (batched.py) runs both, with the same rows, sampling and streaming.

The difference is the KV cache: transformers' is one left-padded batch, which rows cannot join
once it has started (`joins_running` is False): a batch starts with the rows waiting for its
base, and new ones wait for it to end. A row that finishes leaves it at once
(`DynamicCache.batch_select_indices`). Fine-tunes are peft LoRA adapters attached to the one
copy of the base, up to a capacity (least recently used evicted, never one a running row uses),
and a batch of rows of different adapters runs as one forward pass (peft's `adapter_names`).
"""

import itertools
import warnings
from collections import OrderedDict
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, DynamicCache

# peft 0.21 still reads the deprecated `is_gradient_checkpointing`, which warns on every adapter load.
warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)


class PeftAdapters:
    """LoRA adapters attached to a transformers model, numbered by slot as the decoder's bank
    numbers them (0: the base alone)."""

    def __init__(self, model, capacity: int):
        self.model, self.capacity = model, capacity
        self.peft = None  # a peft PeftModel once the first adapter loads
        self.slots: OrderedDict[str, int] = OrderedDict()  # adapter dir -> slot, least recent first

    def slot(self, adapter_dir: str | None, busy: set[int]) -> int | None:
        """The slot holding this adapter, loading it (over the least recently used adapter that
        no running row needs) if it is not loaded; None if every slot is busy."""
        if adapter_dir is None:
            return 0
        if adapter_dir in self.slots:
            self.slots.move_to_end(adapter_dir)
            return self.slots[adapter_dir]
        if len(self.slots) < self.capacity:
            slot = len(self.slots) + 1
        else:
            evictable = [path for path, slot in self.slots.items() if slot not in busy]
            if not evictable:
                return None
            slot = self.slots.pop(evictable[0])
            self.peft.delete_adapter(f"slot{slot}")
        if self.peft is None:
            # Imported here, not with the module: an engine serving only decoder bases never
            # needs peft, which takes seconds to import.
            from peft import PeftModel

            self.peft = PeftModel.from_pretrained(self.model, adapter_dir, adapter_name=f"slot{slot}").eval()
        else:
            self.peft.load_adapter(adapter_dir, adapter_name=f"slot{slot}")
        self.slots[adapter_dir] = slot
        return slot

    def module(self, slots: list[int]) -> tuple[torch.nn.Module, dict]:
        """What to run for rows of these slots, and its extra forward arguments: rows of one
        adapter run it as peft's active adapter (made so when it changes: that walks every LoRA
        layer, too slow to do at each step), other batches name each row's."""
        if self.peft is None:
            return self.model, {}
        if len(set(slots)) == 1 and slots[0]:
            if self.peft.active_adapter != f"slot{slots[0]}":
                self.peft.set_adapter(f"slot{slots[0]}")
            return self.peft, {}
        return self.peft, {"adapter_names": [f"slot{slot}" if slot else "__base__" for slot in slots]}


class TransformersModel:
    joins_running = False

    def __init__(
        self,
        path: Path,
        dtype: torch.dtype,
        device: torch.device,
        pad_id: int,
        adapter_capacity: int,
        remote_code: bool = False,
    ):
        self.model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype, trust_remote_code=remote_code)
        self.model = self.model.to(device).eval()
        self.device, self.pad_id = device, pad_id
        self.adapters = PeftAdapters(self.model, adapter_capacity)
        self._cache: DynamicCache | None = None
        self._mask = self._positions = torch.empty(0, 0, dtype=torch.long, device=device)

    def weight_bytes(self) -> int:
        return sum(t.nbytes for t in itertools.chain(self.model.parameters(), self.model.buffers()))

    def prefill(self, slots: list[int], prompts: list[list[int]], adapters: list[int]) -> torch.Tensor:
        """Starts a batch of these prompts, in rows 0..n-1 (`slots`), left-padded; returns each
        one's next-token logits [rows, vocab]."""
        width = max(map(len, prompts))
        ids = torch.tensor([[self.pad_id] * (width - len(p)) + p for p in prompts], device=self.device)
        self._mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts], device=self.device)
        self._positions = (self._mask.cumsum(-1) - 1).clamp(min=0)
        self._cache = DynamicCache(config=self.model.config)
        return self._forward(ids, adapters)

    def decode(self, tokens: list[int], adapters: list[int]) -> torch.Tensor:
        """One step for the batch's rows, each given its next token. Returns logits [n, vocab]."""
        self._mask = torch.cat([self._mask, self._mask.new_ones((len(tokens), 1))], dim=1)
        self._positions = self._positions[:, -1:] + 1
        return self._forward(torch.tensor(tokens, device=self.device)[:, None], adapters)

    def keep(self, slots: list[int]) -> None:
        """Keeps only these rows of the batch (ascending), which become rows 0..len-1."""
        index = torch.tensor(slots, dtype=torch.long, device=self.device)
        self._cache.batch_select_indices(index)
        self._mask, self._positions = self._mask[index], self._positions[index]

    def _forward(self, ids: torch.Tensor, adapters: list[int]) -> torch.Tensor:
        module, extra = self.adapters.module(adapters)
        output = module(
            input_ids=ids,
            attention_mask=self._mask,
            position_ids=self._positions,
            cache=self._cache,
            use_cache=True,
            **extra,
        )
        return output.logits[:, -1].float()
