"""The processes of one training run: one alone, or several under `torchrun` (DDP).

torchrun starts the same `python -m openft.trainer spec.json` once per GPU (or per process on
the CPU, with gloo) and tells each its RANK, LOCAL_RANK and WORLD_SIZE. Every process holds the
whole model and the whole data set and walks the same batches in the same order; of each batch
it computes the rows `batch[rank::world]`, and DDP averages the gradients. So a run on N
processes takes the same optimizer steps, with the same batch, as a run on one; only rank 0 (the
leader) writes events, checkpoints and the adapter.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch

from openft.processes import die_with_parent


@dataclass(frozen=True)
class Ranks:
    rank: int = 0
    local_rank: int = 0
    world: int = 1

    @classmethod
    def from_environment(cls) -> Ranks:
        ranks = cls(
            int(os.environ.get("RANK", 0)), int(os.environ.get("LOCAL_RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
        )
        if ranks.world > 1:
            die_with_parent()  # the worker stops a job by killing torchrun; its ranks go with it
            backend = "nccl" if torch.cuda.is_available() else "gloo"
            if torch.cuda.is_available():
                torch.cuda.set_device(ranks.local_rank)
            torch.distributed.init_process_group(backend)
        return ranks

    @property
    def leader(self) -> bool:
        return self.rank == 0

    def device(self) -> torch.device:
        return torch.device("cuda", self.local_rank) if torch.cuda.is_available() else torch.device("cpu")

    def wrap(self, model):
        if self.world == 1:
            return model
        from torch.nn.parallel import DistributedDataParallel

        device_ids = [self.local_rank] if torch.cuda.is_available() else None
        return DistributedDataParallel(model, device_ids=device_ids)

    def share(self, batch: list[int]) -> tuple[list[int], int]:
        """This process's rows of `batch`, and 1 — or, when the batch has fewer rows than there
        are processes, one row to run with weight 0 (DDP needs every process in every step)."""
        rows = batch[self.rank :: self.world]
        return (rows, 1) if rows else (batch[:1], 0)

    def sum(self, values: torch.Tensor) -> torch.Tensor:
        """`values` summed over the processes (float64 so that token counts stay exact)."""
        values = values.to(torch.float64)
        if self.world > 1:
            torch.distributed.all_reduce(values)
        return values

    def barrier(self) -> None:
        if self.world > 1:
            torch.distributed.barrier()

    def close(self) -> None:
        if self.world > 1:
            torch.distributed.destroy_process_group()
