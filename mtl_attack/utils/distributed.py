"""torchrun support: process-group setup, batch-preserving evaluation shards, exact reductions.

Evaluation is sharded by whole batches (batch k of the sequential order goes to rank
k % world_size), so every per-batch quantity (the reference convention's batch-weighted means,
a batch's attack) is the same as in a single-process run; metric states are sums and counts,
all-reduced with SUM, never averages of averages.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import torch
import torch.distributed as dist
from torch.utils.data import Sampler


def world() -> tuple[int, int]:
    """(rank, world_size); (0, 1) outside torchrun."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def is_main() -> bool:
    return world()[0] == 0


def init_from_env(device: torch.device) -> bool:
    """Join the process group torchrun describes in the environment (RANK and WORLD_SIZE set),
    also when it has one process: a one-GPU torchrun job runs the same NCCL code paths as a
    multi-GPU one.

    Uses NCCL on CUDA (one GPU per local rank) and gloo on the CPU. Returns whether distributed.
    """
    if not {"RANK", "WORLD_SIZE"} <= set(os.environ) or dist.is_initialized():
        return dist.is_initialized()
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        local, gpus = int(os.environ.get("LOCAL_RANK", "0")), torch.cuda.device_count()
        if local >= gpus:
            raise ValueError(
                f"torchrun local rank {local} has no GPU: this machine has {gpus}; use "
                f"--nproc_per_node={gpus} (one process per GPU) or device=cpu (gloo)"
            )
        torch.cuda.set_device(local)
    dist.init_process_group(backend)
    return True


def local_device(device: torch.device) -> torch.device:
    """The CUDA device of this local rank, or ``device`` unchanged."""
    if device.type == "cuda" and dist.is_initialized():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return device


def average_gradients(model: torch.nn.Module) -> None:
    """Data-parallel training step: replace every gradient by its mean over ranks.

    This is what DistributedDataParallel does (minus bucketing/overlap); doing it explicitly
    keeps the attack inside adversarial training (extra forward/backward passes w.r.t. the
    input) and several forward passes per update legal. Ranks start from the same seeded
    initialization, so their parameters stay identical; BatchNorm statistics are per rank and
    :func:`broadcast_buffers` aligns them before a checkpoint is written.
    """
    if not (dist.is_available() and dist.is_initialized()):
        return
    size = dist.get_world_size()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])  # one collective instead of one per tensor
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    flat /= size
    offset = 0
    for g in grads:
        g.copy_(flat[offset : offset + g.numel()].view_as(g))
        offset += g.numel()


def broadcast_buffers(model: torch.nn.Module) -> None:
    """Copy rank 0's buffers (BatchNorm running statistics) to every rank."""
    if dist.is_available() and dist.is_initialized():
        for buf in model.buffers():
            dist.broadcast(buf, src=0)


def from_main(obj):
    """Rank 0's value of ``obj`` on every rank (identity outside torchrun)."""
    if not (dist.is_available() and dist.is_initialized()):
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


class ShardedBatchSampler(Sampler[list[int]]):
    """Sequential batches of ``batch_size`` over ``range(n)``; this rank keeps batches
    ``rank, rank + world, ...``. With world_size 1 it is a plain sequential batch sampler."""

    def __init__(self, n: int, batch_size: int, rank: int = 0, world_size: int = 1):
        self.n, self.batch_size, self.rank, self.world_size = n, batch_size, rank, world_size

    def _batches(self) -> list[list[int]]:
        starts = range(0, self.n, self.batch_size)
        return [list(range(s, min(s + self.batch_size, self.n))) for s in starts]

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self._batches()[self.rank :: self.world_size])

    def __len__(self) -> int:
        return len(self._batches()[self.rank :: self.world_size])


def all_reduce_sum(
    state: dict[str, torch.Tensor], device: torch.device
) -> dict[str, torch.Tensor]:
    """Sum every tensor of ``state`` over ranks (identity outside torchrun).

    A rank may lack a key (e.g. it saw no valid pixel of a task): it contributes zeros.
    """
    if not (dist.is_available() and dist.is_initialized()):
        return state
    shapes: list[dict] = [{} for _ in range(dist.get_world_size())]
    dist.all_gather_object(shapes, {k: tuple(v.shape) for k, v in state.items()})
    union = {k: s for rank_shapes in shapes for k, s in rank_shapes.items()}
    out = {}
    for key in sorted(union):
        value = state.get(key, torch.zeros(union[key], dtype=torch.float64)).to(device)
        dist.all_reduce(value, op=dist.ReduceOp.SUM)
        out[key] = value.cpu()
    return out
