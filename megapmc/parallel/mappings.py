"""Every tensor-/sequence-parallel collective, as an autograd function whose backward is its dual.

Conventions (Megatron-LM's): activations are ``[s, b, h]``; the tensor-parallel region is where the
hidden dimension is split (last dim), the sequence-parallel region is where the sequence is split
(dim 0). ``group=None`` (or a group of one) makes every mapping the identity, so the same model code
runs in one process.

| mapping | forward | backward |
| --- | --- | --- |
| ``copy_to_tensor_model_parallel_region`` | identity | all-reduce |
| ``reduce_from_tensor_model_parallel_region`` | all-reduce | identity |
| ``gather_from_tensor_model_parallel_region`` | all-gather last dim | keep own chunk |
| ``reduce_scatter_to_sequence_parallel_region`` | reduce-scatter dim 0 | all-gather dim 0 |

The sequence-parallel all-gather in front of a column-parallel GEMM is not a mapping here: the layer
overlaps it with its own GEMM (``all_gather_first_dim_async``, ``megapmc.parallel.layers``).
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.distributed as dist

Group = Optional[dist.ProcessGroup]

# torch >= 2.10 renamed the flat-tensor collectives (both forms take (output, input, ...)); the GPU
# machine may run an older torch. The one place that knows both names.
all_gather_single = getattr(dist, "all_gather_single", None) or dist.all_gather_into_tensor
reduce_scatter_single = getattr(dist, "reduce_scatter_single", None) or dist.reduce_scatter_tensor


def group_size(group: Group) -> int:
    return 1 if group is None else dist.get_world_size(group)


def group_rank(group: Group) -> int:
    return 0 if group is None else dist.get_rank(group)


# ---- raw collectives (no autograd) -------------------------------------------------------------

def _all_reduce(x: torch.Tensor, group: Group) -> torch.Tensor:
    if group_size(group) == 1:
        return x
    x = x.contiguous()
    dist.all_reduce(x, group=group)
    return x


def _split_last_dim(x: torch.Tensor, group: Group) -> torch.Tensor:
    world = group_size(group)
    if world == 1:
        return x
    if x.shape[-1] % world:
        raise ValueError(f"last dim {x.shape[-1]} is not divisible by the tensor-parallel size {world}")
    # [..., n] -> [..., n/tp], this rank's chunk
    return x.chunk(world, dim=-1)[group_rank(group)].contiguous()


def _gather_last_dim(x: torch.Tensor, group: Group) -> torch.Tensor:
    world = group_size(group)
    if world == 1:
        return x
    x = x.contiguous()
    out = _gather_first_dim(x.unsqueeze(0), group)  # [1, ..., n/tp] -> [tp, ..., n/tp]
    return torch.cat(out.unbind(0), dim=-1)  # [tp, ..., n/tp] -> [..., n]


def _gather_first_dim(x: torch.Tensor, group: Group) -> torch.Tensor:
    world = group_size(group)
    if world == 1:
        return x
    x = x.contiguous()
    out = torch.empty((world * x.shape[0],) + x.shape[1:], dtype=x.dtype, device=x.device)
    all_gather_single(out, x, group=group)  # [s/tp, ...] -> [s, ...]
    return out


def _reduce_scatter_first_dim(x: torch.Tensor, group: Group) -> torch.Tensor:
    world = group_size(group)
    if world == 1:
        return x
    if x.shape[0] % world:
        raise ValueError(f"dim 0 ({x.shape[0]}) is not divisible by the tensor-parallel size {world}")
    x = x.contiguous()
    out = torch.empty((x.shape[0] // world,) + x.shape[1:], dtype=x.dtype, device=x.device)
    reduce_scatter_single(out, x, group=group)  # [s, ...] summed over ranks -> [s/tp, ...]
    return out


# ---- asynchronous collectives (for overlapping communication with a GEMM) ------------------------

class _Done:
    """Handle of a collective that needed no communication (one rank)."""

    def wait(self) -> None:
        return None


def all_reduce_async(x: torch.Tensor, group: Group):
    """Start an in-place all-reduce of contiguous ``x``; returns a handle to ``wait()`` on."""
    if group_size(group) == 1:
        return _Done()
    return dist.all_reduce(x, group=group, async_op=True)


def all_gather_first_dim_async(x: torch.Tensor, group: Group):
    """Start ``[s/tp, ...] -> [s, ...]``; returns ``(output, handle)``, output valid after ``wait()``."""
    world = group_size(group)
    if world == 1:
        return x, _Done()
    x = x.contiguous()
    out = torch.empty((world * x.shape[0],) + x.shape[1:], dtype=x.dtype, device=x.device)
    return out, all_gather_single(out, x, group=group, async_op=True)


def reduce_scatter_first_dim_async(x: torch.Tensor, group: Group):
    """Start ``[s, ...]`` summed over ranks ``-> [s/tp, ...]``; returns ``(output, handle)``."""
    world = group_size(group)
    if world == 1:
        return x, _Done()
    if x.shape[0] % world:
        raise ValueError(f"dim 0 ({x.shape[0]}) is not divisible by the tensor-parallel size {world}")
    x = x.contiguous()
    out = torch.empty((x.shape[0] // world,) + x.shape[1:], dtype=x.dtype, device=x.device)
    return out, reduce_scatter_single(out, x, group=group, async_op=True)


# ---- autograd functions ------------------------------------------------------------------------

def _identity(x: torch.Tensor, group: Group) -> torch.Tensor:
    return x


def _all_reduce_copy(x: torch.Tensor, group: Group) -> torch.Tensor:
    # A new tensor: autograd must not see the input modified in place.
    return _all_reduce(x.clone() if group_size(group) > 1 else x, group)


class _Mapping(torch.autograd.Function):
    """``forward(x, group)`` going forward and its dual ``backward(grad, group)`` going back: each mapping
    below is one such pair, as in the module's table."""

    @staticmethod
    def forward(ctx, x, group, forward, backward):
        ctx.group, ctx.dual = group, backward
        return forward(x, group)

    @staticmethod
    def backward(ctx, grad):
        return ctx.dual(grad, ctx.group), None, None, None


def copy_to_tensor_model_parallel_region(x: torch.Tensor, group: Group) -> torch.Tensor:
    """Forward identity; backward all-reduces the gradient (input of a column-parallel layer)."""
    return _Mapping.apply(x, group, _identity, _all_reduce)


def reduce_from_tensor_model_parallel_region(x: torch.Tensor, group: Group) -> torch.Tensor:
    """Forward all-reduce (sum of partial outputs of a row-parallel layer); backward identity."""
    return _Mapping.apply(x, group, _all_reduce_copy, _identity)


def gather_from_tensor_model_parallel_region(x: torch.Tensor, group: Group) -> torch.Tensor:
    """``[..., n/tp] -> [..., n]``; backward keeps this rank's chunk of the gradient."""
    return _Mapping.apply(x, group, _gather_last_dim, _split_last_dim)


def reduce_scatter_to_sequence_parallel_region(x: torch.Tensor, group: Group) -> torch.Tensor:
    """``[s, ...]`` partial sums ``-> [s/tp, ...]`` reduced; backward all-gathers along the sequence."""
    return _Mapping.apply(x, group, _reduce_scatter_first_dim, _gather_first_dim)
