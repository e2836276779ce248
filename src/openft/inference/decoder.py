"""A Llama-family decoder for serving (Llama, Mistral, Qwen2, Qwen3): the base weights once (int4
on CPU where that is exact, see weights.py), every loaded LoRA adapter applied per row in the
same forward pass (lora.py), and a KV cache of slots that requests join and leave between decode
steps (continuous batching).

It is the arithmetic of transformers' modelling code for these families (tests/test_decoder.py
compares them) without what makes a small model slow to serve there: a decode step of
SmolLM2-135M spent most of its time in Python module calls, and peft runs a batch of mixed
adapters as one pass per adapter. q/k/v and gate/up are fused into one matmul each (their
biases too, where a family has them: Qwen2's q/k/v). The families differ only in details read
from the loaded model: biases (Qwen2; Llama's `attention_bias`/`mlp_bias`), RMS norms of q and k
per head (Qwen3), sliding-window attention (Mistral's `sliding_window`, Qwen2/3's sliding
layers), and the RoPE variant (the angles are taken from the model's own rotary embedding, so
Llama 3's and YaRN's scaling come for free; the variants whose angles depend on the sequence's
length are refused).
"""

from functools import partial

import torch
import torch.nn.functional as F

from openft.inference.engine import MAX_BATCH
from openft.inference.invariance import fewest_rows, padded
from openft.inference.lora import AdapterBank
from openft.inference.weights import DenseLinear, linear

FAMILIES = ("llama", "mistral", "qwen2", "qwen3")
# RoPE variants whose angle at a position is fixed (the others rescale with the sequence's length).
FIXED_ROPE = ("default", "linear", "llama3", "yarn")


def unsupported_reason(config) -> str | None:
    """Why this decoder cannot serve a model with this transformers config, or None if it can."""
    rope = getattr(config, "rope_parameters", None) or {}
    checks = {
        "architecture": config.model_type in FAMILIES,
        "activation": getattr(config, "hidden_act", None) == "silu",
        "rope scaling": rope.get("rope_type", "default") in FIXED_ROPE,
    }
    failed = [name for name, ok in checks.items() if not ok]
    return f"its {', '.join(failed)}" if failed else None


def _windows(config) -> list[int | None]:
    """Each layer's sliding attention window (None: it sees every earlier position). Mistral
    slides every layer; Qwen2/3 only the layers `layer_types` names."""
    window = getattr(config, "sliding_window", None)
    if config.model_type == "mistral":
        return [window] * config.num_hidden_layers
    kinds = getattr(config, "layer_types", None) or ["full_attention"] * config.num_hidden_layers
    return [window if kind == "sliding_attention" else None for kind in kinds]


def _fused(modules, quantize: str, dtype: torch.dtype, device: torch.device):
    """nn.Linear modules as one linear layer, their outputs side by side (a module without a bias
    adds zeros where the others have one)."""
    weight = torch.cat([module.weight.detach() for module in modules])
    bias = None
    if any(module.bias is not None for module in modules):
        parts = [m.weight.new_zeros(m.out_features) if m.bias is None else m.bias.detach() for m in modules]
        bias = torch.cat(parts)
    return linear(weight, bias, quantize, dtype, device)


class _Layer:
    def __init__(self, module, make_linear, dtype: torch.dtype, device: torch.device):
        attention, mlp = module.self_attn, module.mlp
        self.input_norm = module.input_layernorm.weight.detach().to(device, dtype)
        self.post_attention_norm = module.post_attention_layernorm.weight.detach().to(device, dtype)
        self.qkv = make_linear(attention.q_proj, attention.k_proj, attention.v_proj)
        self.o = make_linear(attention.o_proj)
        self.gate_up = make_linear(mlp.gate_proj, mlp.up_proj)
        self.down = make_linear(mlp.down_proj)
        # Qwen3 normalises each head's q and k before the rotation.
        norms = [getattr(attention, name, None) for name in ("q_norm", "k_norm")]
        self.q_norm, self.k_norm = (None if n is None else n.weight.detach().to(device, dtype) for n in norms)


class LlamaDecoder:
    joins_running = True  # rows join a running batch (each has its own cache slot)

    def __init__(
        self,
        model,
        quantize: str,
        dtype: torch.dtype,
        device: torch.device,
        adapter_capacity: int,
        batch_invariant: bool = True,
    ):
        config = model.config
        self.dtype, self.device, self.batch_invariant = dtype, device, batch_invariant
        self._fewest_rows: dict[tuple, int] = {}  # invariance.py: per matmul and thread count
        self.heads, self.kv_heads = config.num_attention_heads, config.num_key_value_heads
        self.head_dim = getattr(config, "head_dim", None) or config.hidden_size // self.heads
        self.eps = config.rms_norm_eps
        self.windows = _windows(config)
        with torch.no_grad():
            make_linear = lambda *modules: _fused(modules, quantize, dtype, device)  # noqa: E731
            self.layers = [_Layer(module, make_linear, dtype, device) for module in model.model.layers]
            self.norm = model.model.norm.weight.detach().to(device, dtype)
            self.head = make_linear(model.lm_head)
            tied = model.lm_head.weight is model.model.embed_tokens.weight
            # A tied embedding shares the head's copy when the head stays dense.
            if tied and isinstance(self.head, DenseLinear):
                self.embed = self.head.weight
            else:
                self.embed = model.model.embed_tokens.weight.detach().to(device, dtype)
            # The angles of every position, as the model's rotary embedding computes them (a new
            # one: the loaded model's may hold its frequencies in a 16-bit dtype).
            rotary = type(model.model.rotary_emb)(config=config)
            cos, sin = rotary(torch.zeros(1), torch.arange(config.max_position_embeddings)[None])
        self.cos, self.sin = cos[0].to(device, dtype), sin[0].to(device, dtype)
        q_size, kv_size = self.heads * self.head_dim, self.kv_heads * self.head_dim
        hidden, intermediate = config.hidden_size, config.intermediate_size
        self.adapters = AdapterBank(
            len(self.layers),
            {
                "qkv": (hidden, (q_size, kv_size, kv_size)),
                "o": (q_size, (hidden,)),
                "gate_up": (hidden, (intermediate, intermediate)),
                "down": (intermediate, (hidden,)),
            },
            adapter_capacity,
            dtype,
            device,
        )
        # The KV cache: [layers, slots, kv heads, positions, head dim], grown on demand. It and
        # attention are fp32: in bf16 a row's attention depended on the other rows' lengths.
        # A sliding window is a mask: the cache keeps every position.
        self.keys = self.values = torch.empty(len(self.layers), 0, self.kv_heads, 0, self.head_dim, device=device)
        self.lengths: list[int] = []  # tokens cached in each slot

    def weight_bytes(self) -> int:
        """The memory the base's weights take here (adapters and the KV cache not counted)."""
        tensors = [self.embed, self.norm, self.cos, self.sin, *self.head.tensors()]
        for layer in self.layers:
            tensors += [layer.input_norm, layer.post_attention_norm, layer.q_norm, layer.k_norm]
            for weights in (layer.qkv, layer.o, layer.gate_up, layer.down):
                tensors += weights.tensors()
        distinct = {t.data_ptr(): t.nbytes for t in tensors if t is not None}  # a tied embedding once
        return sum(distinct.values())

    def prefill(self, slots: list[int], prompts: list[list[int]], adapters: list[int]) -> torch.Tensor:
        """Caches prompts in slots (from position 0), in one forward pass with the rows padded
        on the right (causal attention keeps the padding out of every real position), and
        returns each prompt's next-token logits [rows, vocab]."""
        width = max(map(len, prompts))
        self._reserve(max(slots) + 1, width)
        slot_index = torch.tensor(slots, device=self.device)
        query = torch.arange(width, device=self.device)[:, None]
        key = torch.arange(width, device=self.device)[None]
        masks = {window: (key <= query) & (key > query - window) for window in set(self.windows) if window}

        def attend(layer: int, q, k, v):
            self.keys[layer, slot_index, :, :width] = k.float()
            self.values[layer, slot_index, :, :width] = v.float()
            window = self.windows[layer]
            mask = masks[window] if window and window < width else None
            attended = F.scaled_dot_product_attention(
                q.float(), k.float(), v.float(), attn_mask=mask, is_causal=mask is None, enable_gqa=True
            )
            return attended.to(q.dtype)

        ids = torch.tensor([prompt + [0] * (width - len(prompt)) for prompt in prompts], device=self.device)
        positions = torch.arange(width, device=self.device).expand(len(prompts), width)
        last = torch.tensor([len(prompt) - 1 for prompt in prompts], device=self.device)
        logits = self._forward(ids, positions, attend, adapters, last=last)
        for slot, prompt in zip(slots, prompts):
            self.lengths[slot] = len(prompt)
        return logits

    def decode(self, tokens: list[int], adapters: list[int]) -> torch.Tensor:
        """One step for the rows in slots 0..n-1, each given its next token (`adapters`: each
        row's adapter slot, 0 for the base). Returns logits [n, vocab]. Each row attends to
        exactly its own cached positions (its window's, on a sliding layer), one row at a time,
        so that its attention is computed as it would be with no other row beside it."""
        n = len(tokens)
        positions = torch.tensor(self.lengths[:n], device=self.device)
        self._reserve(n, max(self.lengths[:n]) + 1)
        rows = torch.arange(n, device=self.device)
        ends = [length + 1 for length in self.lengths[:n]]
        starts = {window: [max(0, end - window) if window else 0 for end in ends] for window in set(self.windows)}

        def attend(layer: int, q, k, v):
            self.keys[layer, rows, :, positions] = k[:, :, 0].float()
            self.values[layer, rows, :, positions] = v[:, :, 0].float()
            keys, values, begin = self.keys[layer], self.values[layer], starts[self.windows[layer]]
            q = q.float()
            attended = [
                F.scaled_dot_product_attention(
                    q[row : row + 1],
                    keys[row : row + 1, :, begin[row] : ends[row]],
                    values[row : row + 1, :, begin[row] : ends[row]],
                    enable_gqa=True,
                )
                for row in range(n)
            ]
            return torch.cat(attended).to(self.dtype)

        tokens_tensor = torch.tensor(tokens, device=self.device)[:, None]
        logits = self._forward(tokens_tensor, positions[:, None], attend, adapters, decoding=True)
        for row in range(n):
            self.lengths[row] += 1
        return logits

    def keep(self, slots: list[int]) -> None:
        """Keeps the rows in these slots (ascending), moved down to slots 0..len-1, so that the
        running rows always fill the first slots. (Each moves into a slot already vacated or
        moved from.)"""
        for target, source in enumerate(slots):
            if source != target:
                length = self.lengths[source]
                self.keys[:, target, :, :length] = self.keys[:, source, :, :length]
                self.values[:, target, :, :length] = self.values[:, source, :, :length]
                self.lengths[target] = length

    def _forward(self, ids: torch.Tensor, positions: torch.Tensor, attend, adapters, last=None, decoding=False):
        """Logits at each row's `last` position (default: its final one). A decode step's matmuls
        run on at least the rows their kernels need to treat every row alike (invariance.py)."""
        rows, width = ids.shape
        heads, kv_heads, head_dim = self.heads, self.kv_heads, self.head_dim
        cos, sin = self.cos[positions][:, None], self.sin[positions][:, None]
        groups = self.adapters.groups(adapters)
        h = self.embed[ids]
        for index, layer in enumerate(self.layers):
            x = F.rms_norm(h, h.shape[-1:], layer.input_norm, self.eps)
            q, k, v = self._project(index, "qkv", layer.qkv, x, groups, decoding).split(
                [heads * head_dim, kv_heads * head_dim, kv_heads * head_dim], -1
            )
            q, k = q.view(rows, width, heads, head_dim), k.view(rows, width, kv_heads, head_dim)
            if layer.q_norm is not None:
                q = F.rms_norm(q, (head_dim,), layer.q_norm, self.eps)
                k = F.rms_norm(k, (head_dim,), layer.k_norm, self.eps)
            q = _rotate(q.transpose(1, 2), cos, sin)
            k = _rotate(k.transpose(1, 2), cos, sin)
            v = v.view(rows, width, kv_heads, head_dim).transpose(1, 2)
            attended = attend(index, q, k, v).transpose(1, 2).reshape(rows, width, heads * head_dim)
            h = h + self._project(index, "o", layer.o, attended, groups, decoding)
            x = F.rms_norm(h, h.shape[-1:], layer.post_attention_norm, self.eps)
            gate, up = self._project(index, "gate_up", layer.gate_up, x, groups, decoding).chunk(2, dim=-1)
            h = h + self._project(index, "down", layer.down, F.silu(gate) * up, groups, decoding)
        h = h[:, -1:] if last is None else h[torch.arange(rows, device=self.device), last][:, None]
        h = F.rms_norm(h, h.shape[-1:], self.norm, self.eps)
        return self._invariant("head", self.head, h, decoding)[:, 0].float()

    def _project(self, layer: int, name: str, weights, x: torch.Tensor, groups, decoding: bool) -> torch.Tensor:
        y = self._invariant(name, weights, x, decoding)
        for rows, slot in groups:
            a, b = self.adapters.a[name][layer, slot], self.adapters.b[name][layer, slot]
            low_rank = partial(_low_rank, a, b)
            delta = self._invariant(("lora", name), low_rank, x if rows is None else x[rows], decoding)
            if rows is None:
                y.add_(delta)
            else:  # the same elementwise add, on the group's rows
                y[rows] = y[rows].add_(delta)
        return y

    def _invariant(self, key, op, x: torch.Tensor, decoding: bool) -> torch.Tensor:
        """op(x) on at least the rows from which op's kernel treats every row alike (measured for
        `key` at this thread count the first time; invariance.py). Only decode steps are padded:
        a prompt is prefilled alone, so its shapes never depend on other rows."""
        if not (decoding and self.batch_invariant):
            return op(x)
        key = (key, type(op).__name__, self.adapters.rank, torch.get_num_threads())
        if key not in self._fewest_rows:
            self._fewest_rows[key] = fewest_rows(op, x.shape[-1], MAX_BATCH, x.dtype, self.device)
        return padded(op, x, self._fewest_rows[key])

    def _reserve(self, slots: int, length: int) -> None:
        """Grows the KV cache to hold `slots` rows of `length` positions (doubling, so growing
        rows copy the cache a logarithmic number of times)."""
        have_slots, have_length = self.keys.shape[1], self.keys.shape[3]
        if slots <= have_slots and length <= have_length:
            return
        shape = list(self.keys.shape)
        shape[1] = max(slots, 2 * have_slots)
        shape[3] = (
            max(length, min(max(2 * have_length, 256), self.cos.shape[0])) if length > have_length else have_length
        )
        keys, values = (torch.zeros(shape, device=self.device) for _ in range(2))
        keys[:, :have_slots, :, :have_length] = self.keys
        values[:, :have_slots, :, :have_length] = self.values
        self.keys, self.values = keys, values
        self.lengths += [0] * (shape[1] - len(self.lengths))


def _low_rank(a: torch.Tensor, b: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return x.to(a.dtype) @ a @ b


def _rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return x * cos + torch.cat([-x[..., half:], x[..., :half]], dim=-1) * sin
