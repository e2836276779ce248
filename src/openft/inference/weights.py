"""The base model's linear layers as the decoder multiplies them: int4 weight-only on CPU, or
dense; with a bias where the layer has one (Qwen2's q/k/v), added in the layer's dtype.

Decoding one token reads every weight once, so on a CPU its speed is the memory traffic: int4
groups of 32 (a scale and an offset per group: llama.cpp's Q4_1 layout) read 4x fewer bytes than
bf16. The bundled model comes from a Q4_1 GGUF, so its layers' weights already are such groups
and round-trip exactly; `quantize="auto"` packs only weights like that (no loss beyond bf16
scales), `"int4"` packs every weight (what any 4-bit quantization loses), `"none"` packs none.
The kernel is torch's CPU int4 matmul, fast with bf16 activations only.
"""

import torch
import torch.nn.functional as F

GROUP = 32


class Int4Linear:
    """y = x @ W.T (+ bias) with W [out, in] stored as 4-bit codes, groups of GROUP along `in`; and, for
    many rows at once (a prompt's prefill), also dense: the int4 kernel's time grows with the
    rows (it was 2x slower than a bf16 matmul at 64 rows and more), a decode step's few rows are
    memory-bound and 3x faster in int4."""

    DENSE_FROM_ROWS = 32

    def __init__(
        self,
        codes: torch.Tensor,
        scale: torch.Tensor,
        low: torch.Tensor,
        weight: torch.Tensor,
        bias: torch.Tensor | None,
        dtype: torch.dtype,
    ):
        out_features, groups, _ = codes.shape
        self.packed = torch._convert_weight_to_int4pack_for_cpu(codes.reshape(out_features, groups * GROUP), 1)
        # The kernel's dequantisation is (code - 8) * scale + zero.
        self.scales_and_zeros = torch.stack([scale.t(), (low + 8 * scale).t()], -1).to(dtype).contiguous()
        self.dense = DenseLinear(weight, bias, dtype, weight.device)
        self.out_features = out_features

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(-1, x.shape[-1])
        if flat.shape[0] >= self.DENSE_FROM_ROWS:
            return self.dense(x)
        y = torch._weight_int4pack_mm_for_cpu(flat, self.packed, GROUP, self.scales_and_zeros)
        if self.dense.bias is not None:
            y.add_(self.dense.bias)
        return y.view(*x.shape[:-1], self.out_features)

    def tensors(self) -> list[torch.Tensor]:
        return [self.packed, self.scales_and_zeros, *self.dense.tensors()]


class DenseLinear:
    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None, dtype: torch.dtype, device: torch.device):
        self.weight = weight.to(device=device, dtype=dtype).contiguous()
        if device.type == "cpu" and dtype == torch.float32:
            # Stored [in, out] (this is a view of it): MKL's fp32 GEMM then treats every row alike
            # from 2 rows on, at the speed of the [out, in] layout, which takes 16 rows for that
            # (a 16-row step costs ~2.5x a 1-row one; inference/invariance.py).
            self.weight = self.weight.t().contiguous().t()
        self.bias = None if bias is None else bias.to(device=device, dtype=dtype)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight, self.bias)

    def tensors(self) -> list[torch.Tensor]:
        return [self.weight] if self.bias is None else [self.weight, self.bias]


def linear(weight: torch.Tensor, bias: torch.Tensor | None, quantize: str, dtype: torch.dtype, device: torch.device):
    """The fastest exact-enough form of one weight [out, in] and its bias (see the module docstring)."""
    packable = device.type == "cpu" and dtype == torch.bfloat16 and weight.shape[1] % GROUP == 0
    if packable and quantize != "none":
        groups = weight.float().view(weight.shape[0], -1, GROUP)
        low, high = groups.amin(-1), groups.amax(-1)
        scale = ((high - low) / 15).clamp(min=1e-10)
        codes = ((groups - low[..., None]) / scale[..., None]).round().clamp(0, 15)
        error = (codes * scale[..., None] + low[..., None] - groups).abs().max()
        if quantize == "int4" or error <= 1e-6 * groups.abs().max():
            exact = (codes * scale[..., None] + low[..., None]).view(weight.shape)  # what the codes mean
            return Int4Linear(codes.to(torch.int32), scale, low, exact, bias, dtype)
    return DenseLinear(weight, bias, dtype, device)
