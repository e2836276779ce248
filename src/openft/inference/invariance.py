"""Batch invariance: a row's logits never depend on how many other rows share its decode step.

A matmul kernel may take another path for another number of rows, and so add a row's products in
another order: on x86, MKL's fp32 GEMM gives row 0 of a 1-row product other low bits than row 0
of a 2-row one, and other again from 16 rows on; a batched matmul of one matrix takes the
single-matrix path. Under greedy decoding those low bits change a reply once two tokens are
nearly tied, so a reply would depend on which requests happened to arrive with it.

What is measured here, not assumed: for each matmul of a decode step (each distinct shape and
kind of weight, each adapter projection), `fewest_rows` finds the smallest number of rows from
which the kernel gives every row the same bits whatever the count, up to the batch limit; a step
with fewer rows pads that matmul's input with zero rows. Where the kernel already treats rows
alike (torch's int4 kernel and oneDNN's bf16 matmul on a CPU with AVX512-BF16), nothing is
padded and nothing is lost; MKL's fp32 GEMM needs the full batch. Kernels may choose by thread
count too, so each count the engine runs with is measured once, when first used.

The rest of a step is per row by construction: attention runs row by row over exactly the row's
own cached positions (decoder.py), and each prompt is prefilled alone (batched.py).
"""

from collections.abc import Callable

import torch

Op = Callable[[torch.Tensor], torch.Tensor]


def fewest_rows(op: Op, in_features: int, max_rows: int, dtype: torch.dtype, device: torch.device) -> int:
    """The fewest rows (1..max_rows) from which `op` on x [rows, 1, in_features] gives each row
    the result it gives that row with any more rows, up to max_rows."""
    generator = torch.Generator(device=device).manual_seed(0)
    x = torch.randn(max_rows, 1, in_features, generator=generator, device=device).to(dtype)
    full = op(x)
    fewest = max_rows
    for rows in range(max_rows - 1, 0, -1):
        if not torch.equal(op(x[:rows]), full[:rows]):
            break
        fewest = rows
    return fewest


def padded(op: Op, x: torch.Tensor, rows: int) -> torch.Tensor:
    """op(x) computed on at least `rows` rows (x's first dimension; zero rows added, results
    dropped)."""
    missing = rows - x.shape[0]
    if missing <= 0:
        return op(x)
    return op(torch.cat([x, x.new_zeros(missing, *x.shape[1:])]))[: x.shape[0]]
