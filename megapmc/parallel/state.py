"""Process groups for tensor, data and pipeline parallelism, passed explicitly (no module-level state).

Rank order (Megatron's): TP fastest, then DP, then PP. The world is a grid ``[pp, dp, tp]`` and
global rank ``r = (pp_rank · dp + dp_rank) · tp + tp_rank``, so

* a TP group is ``tp`` adjacent ranks (inside one node: NVLink carries the per-layer all-reduces);
* a DP group is the ranks with the same (pp, tp) coordinates, ``tp`` apart;
* a PP group is the ranks with the same (dp, tp) coordinates, ``dp · tp`` apart (pipeline stages span
  nodes: only one activation per micro-batch crosses between them).

A ``ParallelState`` with ``tp_size > 1`` or ``pp_size > 1`` must carry the matching process group;
``ParallelState.for_shapes`` is the one explicit exception, for code that only needs per-rank shapes
(meta-device models in the memory estimator and conversion), where any collective would be a bug.
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
    pp_size: int = 1
    pp_rank: int = 0
    pp_group: Optional[dist.ProcessGroup] = None
    shapes_only: bool = False  # built by for_shapes: sizes and ranks, no process groups

    def __post_init__(self):
        for name in ("tp", "dp", "pp"):
            size, rank = getattr(self, f"{name}_size"), getattr(self, f"{name}_rank")
            if size < 1 or not 0 <= rank < size:
                raise ValueError(f"ParallelState: {name}_rank {rank} is not in [0, {name}_size={size})")
        if self.shapes_only:
            return
        for name in ("tp", "pp"):
            if getattr(self, f"{name}_size") > 1 and getattr(self, f"{name}_group") is None:
                raise ValueError(
                    f"ParallelState with {name}_size={getattr(self, f'{name}_size')} has no {name}_group: build "
                    f"it with initialize_parallel(), or ParallelState.for_shapes(...) when only the per-rank "
                    f"shapes are needed (meta-device models)")

    @classmethod
    def single(cls) -> "ParallelState":
        """One process: no groups, every collective is the identity."""
        return cls()

    @classmethod
    def for_shapes(cls, tp: int = 1, pp: int = 1, dp: int = 1, tp_rank: int = 0, pp_rank: int = 0,
                   dp_rank: int = 0) -> "ParallelState":
        """The sizes and ranks of one position in a ``tp × dp × pp`` grid, without process groups: for
        building meta-device models (parameter counts, per-rank shapes), never for running one."""
        return cls(tp_size=tp, tp_rank=tp_rank, dp_size=dp, dp_rank=dp_rank, pp_size=pp, pp_rank=pp_rank,
                   rank=(pp_rank * dp + dp_rank) * tp + tp_rank, world_size=tp * dp * pp, shapes_only=True)

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

    # ---- pipeline ---------------------------------------------------------------------------------

    @property
    def is_pipeline_first_stage(self) -> bool:
        """This rank holds the embedding (and the first decoder layers)."""
        return self.pp_rank == 0

    @property
    def is_pipeline_last_stage(self) -> bool:
        """This rank holds the final norm, the output layer and the loss."""
        return self.pp_rank == self.pp_size - 1

    def pipeline_rank_to_global(self, pp_rank: int) -> int:
        """Global rank of pipeline stage ``pp_rank`` (taken modulo ``pp_size``) with this rank's DP and
        TP coordinates."""
        return self.rank + ((pp_rank % self.pp_size) - self.pp_rank) * self.dp_size * self.tp_size

    @property
    def pipeline_next_rank(self) -> int:
        """Global rank of the next stage; the last stage's next is the first (interleaved schedules wrap)."""
        return self.pipeline_rank_to_global(self.pp_rank + 1)

    @property
    def pipeline_prev_rank(self) -> int:
        """Global rank of the previous stage; the first stage's previous is the last."""
        return self.pipeline_rank_to_global(self.pp_rank - 1)


def initialize_parallel(tensor_model_parallel_size: int = 1, pipeline_model_parallel_size: int = 1,
                        backend: str | None = None) -> ParallelState:
    """Initialise ``torch.distributed`` from torchrun's environment if needed and build the groups.

    Every rank must call this with the same arguments (``new_group`` is collective). DP is what is
    left: ``world / (TP × PP)``.
    """
    tp, pp = tensor_model_parallel_size, pipeline_model_parallel_size
    if not dist.is_initialized():
        if "RANK" not in os.environ:
            if tp * pp != 1:
                raise ValueError(
                    f"--tensor-model-parallel-size {tp} x --pipeline-model-parallel-size {pp} needs {tp * pp} "
                    f"processes: launch with torchrun --nproc-per-node {tp * pp} (or a multiple)"
                )
            return ParallelState.single()
        if backend is None:
            import torch

            backend = "nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend)
    world, rank = dist.get_world_size(), dist.get_rank()
    if tp < 1 or pp < 1 or world % (tp * pp):
        raise ValueError(
            f"--tensor-model-parallel-size {tp} x --pipeline-model-parallel-size {pp} = {tp * pp} does not "
            f"divide the world size {world}; launch a multiple of {tp * pp} processes"
        )
    dp = world // (tp * pp)
    tp_rank, dp_rank, pp_rank = rank % tp, rank // tp % dp, rank // (tp * dp)

    def grid(t: int, d: int, p: int) -> int:
        return (p * dp + d) * tp + t

    def own_group(all_ranks: list[list[int]]):
        # Every rank creates every group, in the same order, as new_group requires.
        mine = None
        for ranks in all_ranks:
            group = dist.new_group(ranks)
            if rank in ranks:
                mine = group
        return mine

    tp_group = own_group([[grid(t, d, p) for t in range(tp)] for p in range(pp) for d in range(dp)])
    dp_group = own_group([[grid(t, d, p) for d in range(dp)] for p in range(pp) for t in range(tp)])
    pp_group = own_group([[grid(t, d, p) for p in range(pp)] for d in range(dp) for t in range(tp)])
    return ParallelState(
        tp_size=tp, tp_rank=tp_rank, dp_size=dp, dp_rank=dp_rank, pp_size=pp, pp_rank=pp_rank, rank=rank,
        world_size=world, tp_group=tp_group, dp_group=dp_group, pp_group=pp_group,
    )


def destroy_parallel() -> None:
    """Orderly teardown of what ``initialize_parallel`` set up: a barrier, so that no rank leaves while
    another still has a collective in flight, then the process groups are destroyed (a process that exits
    with live gloo/NCCL groups can abort with "terminate called without an active exception")."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
