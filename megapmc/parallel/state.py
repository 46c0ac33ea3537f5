"""Process groups for tensor and data parallelism, passed explicitly (no module-level state).

Layout: the world is a grid ``[dp, tp]`` with TP ranks adjacent, so a TP group stays inside a node
(NVLink) and DP groups span nodes. Rank ``r`` has ``tp_rank = r % tp`` and ``dp_rank = r // tp``.
Pipeline parallelism would add an outer ``pp`` axis: ``r = (pp_rank * dp + dp_rank) * tp + tp_rank``.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Optional

import torch.distributed as dist


@dataclass(frozen=True)
class ParallelState:
    tp_size: int = 1
    tp_rank: int = 0
    dp_size: int = 1
    dp_rank: int = 0
    rank: int = 0
    world_size: int = 1
    tp_group: Optional[dist.ProcessGroup] = None
    dp_group: Optional[dist.ProcessGroup] = None

    @classmethod
    def single(cls) -> "ParallelState":
        """One process: no groups, every collective is the identity."""
        return cls()

    @property
    def is_first_rank(self) -> bool:
        return self.rank == 0

    @property
    def tp_src_rank(self) -> int:
        """Global rank of TP rank 0 in this rank's TP group (for broadcasts inside the group)."""
        return self.rank - self.tp_rank

    # World-group collectives, the one place the trainer and the checkpoint code reach the whole world
    # through (a single process, or a world of one, makes each the identity).

    def _distributed(self) -> bool:
        return self.world_size > 1 and dist.is_available() and dist.is_initialized()

    def all_reduce_max(self, tensor):
        """Element-wise maximum over the world, in place (a flag any rank raised reaches every rank)."""
        if self._distributed():
            dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
        return tensor

    def all_gather_object(self, obj) -> list:
        """``obj`` (picklable, small) of every rank of the world, in rank order."""
        if not self._distributed():
            return [obj]
        out = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out


def initialize_parallel(tensor_model_parallel_size: int = 1, backend: str | None = None) -> ParallelState:
    """Initialise ``torch.distributed`` from torchrun's environment if needed and build the groups.

    Every rank must call this with the same arguments (``new_group`` is collective).
    """
    tp = tensor_model_parallel_size
    if not dist.is_initialized():
        if "RANK" not in os.environ:
            if tp != 1:
                raise ValueError(
                    f"--tensor-model-parallel-size {tp} needs {tp} processes: launch with torchrun "
                    f"--nproc-per-node {tp} (or more)"
                )
            return ParallelState.single()
        if backend is None:
            import torch

            backend = "nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend)
    world, rank = dist.get_world_size(), dist.get_rank()
    if tp < 1 or world % tp:
        raise ValueError(
            f"--tensor-model-parallel-size {tp} does not divide the world size {world}; "
            f"launch a multiple of {tp} processes"
        )
    dp = world // tp
    tp_group = dp_group = None
    for d in range(dp):  # every rank creates every group, as new_group requires
        ranks = list(range(d * tp, (d + 1) * tp))
        group = dist.new_group(ranks)
        if rank in ranks:
            tp_group = group
    for t in range(tp):
        ranks = list(range(t, world, tp))
        group = dist.new_group(ranks)
        if rank in ranks:
            dp_group = group
    return ParallelState(
        tp_size=tp, tp_rank=rank % tp, dp_size=dp, dp_rank=rank // tp, rank=rank, world_size=world,
        tp_group=tp_group, dp_group=dp_group,
    )


def destroy_parallel() -> None:
    """Orderly teardown of what ``initialize_parallel`` set up: a barrier, so that no rank leaves while
    another still has a collective in flight, then the process groups are destroyed (a process that exits
    with live gloo/NCCL groups can abort with "terminate called without an active exception")."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
