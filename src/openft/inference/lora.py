"""LoRA adapters for batched serving: every loaded adapter's A and B matrices stacked per
projection, so one forward pass applies a different adapter to each row: the rows of each
adapter in the batch get x @ A[slot] @ B[slot] (`groups`). Masking one matmul over every slot's
matrices instead was slower here: it reads every loaded adapter, each group only its own.

The decoder fuses q/k/v and gate/up into one projection each, so their adapters are fused too:
A side by side, B block-diagonal. Slot 0 is all zeros (the base model); adapters of lower rank
are zero-padded to the bank's rank, which changes nothing. The LoRA scale is folded into B.

On a GPU the bank is in the base's dtype. On a CPU it is fp32 whatever the base's dtype: on a
CPU with native bf16 these small matmuls took twice as long in bf16, and in fp32 both adapter
figures of the decode loop rose 15-20% (bench/README.md; bench/engine_bench.py measures them).
"""

import json
import re
from collections import OrderedDict
from pathlib import Path

import torch
from safetensors.torch import load_file

# The decoder's fused projections and, in order, the peft module names each one is made of.
PROJECTIONS = {
    "qkv": ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"),
    "o": ("self_attn.o_proj",),
    "gate_up": ("mlp.gate_proj", "mlp.up_proj"),
    "down": ("mlp.down_proj",),
}
_KEY = re.compile(r"layers\.(\d+)\.(self_attn\.[qkvo]_proj|mlp\.(?:gate|up|down)_proj)\.lora_([AB])\.weight$")


class UnsupportedAdapter(ValueError):
    pass


class AdapterBank:
    def __init__(
        self,
        layers: int,
        shapes: dict[str, tuple[int, tuple[int, ...]]],
        capacity: int,
        dtype: torch.dtype,
        device: torch.device,
    ):
        """`shapes`: per projection, its input size and the output size of each of its parts;
        `dtype`: the base model's (on a CPU the bank is fp32, see the module docstring)."""
        self.layers, self.shapes, self.capacity = layers, shapes, capacity
        self.dtype, self.device = torch.float32 if device.type == "cpu" else dtype, device
        self.rank = 0
        self.a: dict[str, torch.Tensor] = {}  # projection -> [layers, capacity + 1, in, parts x rank]
        self.b: dict[str, torch.Tensor] = {}  # projection -> [layers, capacity + 1, parts x rank, out]
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
        self._load(Path(adapter_dir), slot)
        self.slots[adapter_dir] = slot
        return slot

    def groups(self, slots: list[int]) -> list[tuple[torch.Tensor | None, int]]:
        """The rows of each adapter in a batch (`slots`: each row's), as (row indices, slot);
        the indices are None where every row has that adapter. Base rows (slot 0) are in none.
        Each group is multiplied by its own adapter's matrices: gathering every row's A and B
        instead copied megabytes a step, and a row's bits would depend on the other rows'
        adapters (which path the batch took)."""
        if not self.a:
            return []
        if set(slots) == {slots[0]} and slots[0]:
            return [(None, slots[0])]
        return [
            (torch.tensor([row for row, s in enumerate(slots) if s == slot], device=self.device), slot)
            for slot in sorted(set(slots) - {0})
        ]

    def _load(self, adapter_dir: Path, slot: int) -> None:
        config = json.loads((adapter_dir / "adapter_config.json").read_text())
        for feature in ("use_dora", "alpha_pattern", "rank_pattern", "modules_to_save"):
            if config.get(feature):
                raise UnsupportedAdapter(
                    f"{adapter_dir.name}: adapters with {feature} are not served; set OPENFT_ENGINE=hf"
                )
        if config.get("bias", "none") != "none":
            raise UnsupportedAdapter(
                f"{adapter_dir.name}: adapters with trained biases are not served; set OPENFT_ENGINE=hf"
            )
        weights = {}
        for key, tensor in load_file(adapter_dir / "adapter_model.safetensors").items():
            match = _KEY.search(key)
            if not match:
                raise UnsupportedAdapter(f"{adapter_dir.name}: no batched LoRA for {key}; set OPENFT_ENGINE=hf")
            weights[int(match[1]), match[2], match[3]] = tensor
        rank = config["r"]
        scale = config["lora_alpha"] / (rank**0.5 if config.get("use_rslora") else rank)
        self._reserve(rank)
        for projection, modules in PROJECTIONS.items():
            a, b = self.a[projection][:, slot], self.b[projection][:, slot]
            a.zero_()
            b.zero_()
            out_start = 0
            for part, (module, out_size) in enumerate(zip(modules, self.shapes[projection][1])):
                ranks = slice(part * self.rank, part * self.rank + rank)
                for layer in range(self.layers):
                    if (layer, module, "A") in weights:
                        a[layer, :, ranks] = weights[layer, module, "A"].t()
                        b[layer, ranks, out_start : out_start + out_size] = weights[layer, module, "B"].t() * scale
                out_start += out_size

    def _reserve(self, rank: int) -> None:
        """Room for adapters of this rank (the first adapter allocates the bank)."""
        if rank <= self.rank:
            return
        old_rank, old_a, old_b = self.rank, self.a, self.b
        self.rank, self.a, self.b = rank, {}, {}
        for projection, (in_size, out_sizes) in self.shapes.items():
            parts = len(out_sizes)
            shape_a = (self.layers, self.capacity + 1, in_size, parts * rank)
            shape_b = (self.layers, self.capacity + 1, parts * rank, sum(out_sizes))
            self.a[projection] = torch.zeros(shape_a, dtype=self.dtype, device=self.device)
            self.b[projection] = torch.zeros(shape_b, dtype=self.dtype, device=self.device)
            for part in range(parts if old_a else 0):  # loaded adapters keep their weights
                new, old = slice(part * rank, part * rank + old_rank), slice(part * old_rank, (part + 1) * old_rank)
                self.a[projection][..., new] = old_a[projection][..., old]
                self.b[projection][..., new, :] = old_b[projection][..., old, :]
