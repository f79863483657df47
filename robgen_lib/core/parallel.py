"""Sharded evaluation: split the test images over processes with PyTorch's distributed runtime.

Launched plainly, everything runs in one process. Launched with ``torchrun
--nproc_per_node N``, each process takes every N-th *batch* (gloo on CPUs, nccl on GPUs,
one GPU per process) and the per-image results are gathered on every rank at the end.
Every batch draws its randomness from a generator seeded by (seed, batch index), never
from a shared stream, so the results are exactly those of a single process.

The command line that fills the book's costliest tables this way is
:mod:`robgen_lib.sharded`.
"""
from __future__ import annotations

import os
from typing import Callable

import torch
import torch.distributed as dist

from .data import batch_slices
from .progress import progress_bar

__all__ = ["init_distributed", "close_distributed", "rank_and_world", "batch_generator", "sharded_map"]


def init_distributed() -> tuple[int, int]:
    """Join the process group torchrun describes in the environment (if any); returns (rank, world)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        cuda = torch.cuda.is_available()
        if cuda:
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group(backend="nccl" if cuda else "gloo")
    return rank_and_world()


def close_distributed() -> None:
    """Leave the process group (after all ranks reach this point). A process that exits with
    the group still open can abort in gloo's threads at interpreter shutdown."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def rank_and_world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def batch_generator(seed: int, batch_index: int) -> torch.Generator:
    """The generator of one batch (or item): independent of how work is spread over processes."""
    return torch.Generator().manual_seed(seed * 1_000_003 + batch_index)


def sharded_map(fn: Callable, x: torch.Tensor, y: torch.Tensor, *, batch_size: int, seed: int = 0,
                desc: str = "evaluate", progress: bool = True) -> dict[str, torch.Tensor]:
    """``fn(xb, yb, generator) -> {name: per-image tensor}`` over all batches, this process's share.

    Returns the per-image results of *all* images, in order, on every rank (CPU tensors).
    """
    rank, world = rank_and_world()
    batches = list(batch_slices(len(x), batch_size))
    mine = [i for i in range(len(batches)) if i % world == rank]
    local: dict[int, dict] = {}
    for i in progress_bar(mine, desc=f"{desc} [{rank + 1}/{world}]" if world > 1 else desc, enabled=progress):
        s = batches[i]
        out = fn(x[s], y[s], batch_generator(seed, i))
        local[i] = {k: v.detach().cpu() for k, v in out.items()}
    if world > 1:
        gathered: list = [None] * world
        dist.all_gather_object(gathered, local)
        local = {i: r for part in gathered for i, r in part.items()}
    if not local:
        return {}
    keys = local[0].keys()
    return {k: torch.cat([local[i][k] for i in range(len(batches))]) for k in keys}
