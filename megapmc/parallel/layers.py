"""Tensor-parallel layers (Megatron-LM's): column- and row-parallel linears and the vocab-parallel embedding.

Activations are ``[s, b, h]``. With ``sequence_parallel`` the activations outside the TP region are split
along the sequence (``[s/tp, b, h]``): a column-parallel layer all-gathers them and a row-parallel layer
reduce-scatters its output instead of all-reducing it.

Initialisation gives identical full weights at every TP size: each layer draws the FULL weight from a
generator seeded by ``seed`` and keeps its own slice (``init_weights(seed)``). A layer whose output rows
stack several logical matrices (fused QKV, fused gate/up) draws and slices each one separately, so the
per-rank layout is ``[a_local; b_local; ...]``.

Each layer declares its weight's split in ``weight_layout`` (``megapmc.parallel.layout``); ``shard`` and
checkpoint conversion both cut through it.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from megapmc.parallel.mappings import (
    Group,
    all_gather_first_dim_async,
    all_reduce_async,
    gather_from_tensor_model_parallel_region,
    reduce_scatter_first_dim_async,
    reduce_from_tensor_model_parallel_region,
    reduce_scatter_to_sequence_parallel_region,
)
from megapmc.parallel.layout import TensorLayout
from megapmc.parallel.state import ParallelState


def seeded_normal(shape: Sequence[int], std: float, seed: int, device, dtype) -> torch.Tensor:
    """A full tensor drawn from N(0, std²) with its own generator: the same numbers on every rank and at
    every TP size (for a given device type)."""
    device = torch.device(device)
    gen = torch.Generator(device=device)
    gen.manual_seed(seed)
    out = torch.empty(tuple(shape), device=device, dtype=torch.float32)
    out.normal_(0.0, std, generator=gen)
    return out.to(dtype)


class _ColumnParallelMatmul(torch.autograd.Function):
    """``Y = X Wᵀ`` for a column-parallel layer, with its collectives overlapped with the GEMMs.

    Forward: with sequence parallelism ``X`` is this rank's ``[s/tp, b, in]`` and is all-gathered first.
    Backward: the input gradient's all-reduce (reduce-scatter with SP) runs while the weight-gradient
    GEMM computes; with SP only the local ``[s/tp, b, in]`` input is saved and re-gathered in backward,
    its all-gather overlapping the input-gradient GEMM (Megatron-LM's memory/overlap trade).
    """

    @staticmethod
    def forward(ctx, x, weight, group: Group, sequence_parallel: bool):
        if sequence_parallel:
            total, handle = all_gather_first_dim_async(x, group)  # [s/tp, b, in] -> [s, b, in]
            handle.wait()
        else:
            total = x
        ctx.save_for_backward(x, weight)
        ctx.group, ctx.sequence_parallel = group, sequence_parallel
        return F.linear(total, weight)  # [s, b, out/tp]

    @staticmethod
    def backward(ctx, grad_out):
        x, weight = ctx.saved_tensors
        group = ctx.group
        if ctx.sequence_parallel:
            total, gather = all_gather_first_dim_async(x, group)  # re-gather while grad_input computes
        else:
            total, gather = x, None
        grad_input = grad_out.matmul(weight)  # [s, b, out/tp] @ [out/tp, in] -> [s, b, in], partial over TP
        if gather is not None:
            gather.wait()
            grad_input, reduce = reduce_scatter_first_dim_async(grad_input, group)  # -> [s/tp, b, in]
        else:
            reduce = all_reduce_async(grad_input, group)
        grad_weight = None
        if ctx.needs_input_grad[1]:
            # [out/tp, s·b] @ [s·b, in] -> [out/tp, in], computed while the input gradient is reduced
            grad_weight = grad_out.reshape(-1, grad_out.shape[-1]).t().matmul(total.reshape(-1, total.shape[-1]))
        reduce.wait()
        return grad_input, grad_weight, None, None


def derive_seed(seed: int, name: str) -> int:
    """A stable per-tensor seed (``hash()`` is salted per process, so it cannot be used)."""
    h = 1469598103934665603
    for byte in f"{seed}:{name}".encode():
        h = ((h ^ byte) * 1099511628211) % (1 << 63)
    return h


class ColumnParallelLinear(nn.Module):
    """``Y = X Aᵀ`` with A's output rows split across TP ranks.

    Sharding: ``weight`` is ``[sum(output_sizes)/tp, input_size]``; each logical block of
    ``output_sizes`` is split separately, so a rank holds ``[block0_local; block1_local; ...]``. With
    ``pad_to_multiple_of`` (the output layer: one block, the vocabulary) the rows are padded to a multiple
    of it × tp (Megatron's vocabulary padding).
    Input: ``[s, b, in]`` replicated across TP (or ``[s/tp, b, in]`` with sequence parallelism, all-gathered
    here). Output: ``[s, b, out/tp]`` (TP region), or the full ``[s, b, out]`` with ``gather_output``.
    Backward all-reduces (or, with sequence parallelism, reduce-scatters) the input gradient.
    """

    tensor_model_parallel = True  # its weight is split across TP (the optimizer's norm adds it over TP)

    def __init__(self, input_size: int, output_sizes: int | Sequence[int], parallel: ParallelState, *,
                 init_std: float = 0.02, gather_output: bool = False, sequence_parallel: bool = False,
                 pad_to_multiple_of: int | None = None, device=None, dtype=None):
        super().__init__()
        if isinstance(output_sizes, int):
            output_sizes = [output_sizes]
        self.input_size = input_size
        self.weight_layout = TensorLayout((sum(output_sizes), input_size), split_dim=0,
                                          blocks=tuple(output_sizes) if len(output_sizes) > 1 else None,
                                          pad_to_multiple_of=pad_to_multiple_of)
        self.output_sizes = self.weight_layout.block_sizes(parallel.tp_size)  # padding included
        self.local_sizes = self.weight_layout.local_block_sizes(parallel.tp_size)
        self.parallel = parallel
        self.init_std = init_std
        self.gather_output = gather_output
        self.sequence_parallel = sequence_parallel and parallel.tp_size > 1
        self.weight = nn.Parameter(torch.empty(sum(self.local_sizes), input_size, device=device, dtype=dtype))

    @torch.no_grad()
    def init_weights(self, seed: int) -> None:
        rank, parts = self.parallel.tp_rank, []
        for i, (full, local) in enumerate(zip(self.output_sizes, self.local_sizes)):
            w = seeded_normal((full, self.input_size), self.init_std, derive_seed(seed, f"block{i}"),
                              self.weight.device, self.weight.dtype)
            parts.append(w[rank * local:(rank + 1) * local])  # [full, in] -> [full/tp, in]
        self.weight.copy_(torch.cat(parts, dim=0))

    def shard(self, full: torch.Tensor) -> torch.Tensor:
        """This rank's rows of the full weight ``[sum(output_sizes), in]``: ``[block0_local; ...]``."""
        return self.weight_layout.shard(full, self.parallel.tp_size, self.parallel.tp_rank)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        group = self.parallel.tp_group
        if self.parallel.tp_size == 1:
            y = F.linear(x, self.weight)
        else:
            y = _ColumnParallelMatmul.apply(x, self.weight, group, self.sequence_parallel)  # [s, b, out/tp]
        if self.gather_output:
            y = gather_from_tensor_model_parallel_region(y, group)  # [s, b, out]
        return y

    def extra_repr(self) -> str:
        return (f"in={self.input_size}, out={self.output_sizes} split {self.parallel.tp_size} ways, "
                f"sequence_parallel={self.sequence_parallel}")


class RowParallelLinear(nn.Module):
    """``Y = X Aᵀ`` with A's input columns split across TP ranks.

    Sharding: ``weight`` is ``[output_size, input_size/tp]``. Input: ``[s, b, in/tp]`` (the TP region,
    e.g. a column-parallel layer's output). Each rank computes a partial sum that is all-reduced to the
    replicated ``[s, b, out]``, or reduce-scattered to ``[s/tp, b, out]`` with sequence parallelism.
    """

    tensor_model_parallel = True  # its weight is split across TP (the optimizer's norm adds it over TP)

    def __init__(self, input_size: int, output_size: int, parallel: ParallelState, *,
                 init_std: float = 0.02, sequence_parallel: bool = False, device=None, dtype=None):
        super().__init__()
        self.input_size = input_size
        self.output_size = output_size
        self.weight_layout = TensorLayout((output_size, input_size), split_dim=1)
        self.local_input_size = self.weight_layout.local_shape(parallel.tp_size)[1]
        self.parallel = parallel
        self.init_std = init_std
        self.sequence_parallel = sequence_parallel and parallel.tp_size > 1
        self.weight = nn.Parameter(torch.empty(output_size, self.local_input_size, device=device, dtype=dtype))

    @torch.no_grad()
    def init_weights(self, seed: int) -> None:
        w = seeded_normal((self.output_size, self.input_size), self.init_std, derive_seed(seed, "block0"),
                          self.weight.device, self.weight.dtype)
        self.weight.copy_(self.shard(w))

    def shard(self, full: torch.Tensor) -> torch.Tensor:
        """This rank's columns of the full weight: ``[out, in] -> [out, in/tp]``."""
        return self.weight_layout.shard(full, self.parallel.tp_size, self.parallel.tp_rank)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.linear(x, self.weight)  # [s, b, out], partial sum over this rank's input columns
        if self.sequence_parallel:
            return reduce_scatter_to_sequence_parallel_region(y, self.parallel.tp_group)  # [s/tp, b, out]
        return reduce_from_tensor_model_parallel_region(y, self.parallel.tp_group)

    def extra_repr(self) -> str:
        return (f"in={self.input_size} split {self.parallel.tp_size} ways, out={self.output_size}, "
                f"sequence_parallel={self.sequence_parallel}")


class VocabParallelEmbedding(nn.Module):
    """Token embedding with vocabulary rows split across TP ranks.

    Sharding: ``weight`` is ``[V/tp, h]`` holding rows ``[tp_rank·V/tp, (tp_rank+1)·V/tp)`` of the
    ``num_embeddings`` vocabulary rows padded to ``V``, a multiple of ``pad_to_multiple_of × tp``
    (Megatron's padding; none by default). Input: token ids ``[s, b]`` (replicated). Each rank looks up
    the ids it owns (zeros elsewhere) and the partial results are all-reduced to ``[s, b, h]``, or
    reduce-scattered to ``[s/tp, b, h]`` with sequence parallelism.
    """

    tensor_model_parallel = True  # its weight is split across TP (the optimizer's norm adds it over TP)

    def __init__(self, num_embeddings: int, embedding_dim: int, parallel: ParallelState, *,
                 init_std: float = 0.02, sequence_parallel: bool = False, pad_to_multiple_of: int | None = None,
                 device=None, dtype=None):
        super().__init__()
        self.weight_layout = TensorLayout((num_embeddings, embedding_dim), split_dim=0,
                                          pad_to_multiple_of=pad_to_multiple_of)
        self.num_embeddings = self.weight_layout.padded_shape(parallel.tp_size)[0]
        self.embedding_dim = embedding_dim
        self.parallel = parallel
        self.init_std = init_std
        self.sequence_parallel = sequence_parallel and parallel.tp_size > 1
        self.num_local = self.weight_layout.local_shape(parallel.tp_size)[0]
        self.vocab_start = parallel.tp_rank * self.num_local
        self.weight = nn.Parameter(torch.empty(self.num_local, embedding_dim, device=device, dtype=dtype))

    @torch.no_grad()
    def init_weights(self, seed: int) -> None:
        w = seeded_normal((self.num_embeddings, self.embedding_dim), self.init_std, derive_seed(seed, "block0"),
                          self.weight.device, self.weight.dtype)
        self.weight.copy_(self.shard(w))

    def shard(self, full: torch.Tensor) -> torch.Tensor:
        """This rank's vocabulary rows: ``[V, h] -> [V/tp, h]``."""
        return self.weight_layout.shard(full, self.parallel.tp_size, self.parallel.tp_rank)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        if self.parallel.tp_size == 1:
            return F.embedding(input_ids, self.weight)  # [s, b, h]
        local = input_ids - self.vocab_start
        outside = (local < 0) | (local >= self.num_local)
        out = F.embedding(local.masked_fill(outside, 0), self.weight)  # [s, b, h], rows owned here
        out = out.masked_fill(outside.unsqueeze(-1), 0.0)
        if self.sequence_parallel:
            return reduce_scatter_to_sequence_parallel_region(out, self.parallel.tp_group)  # [s/tp, b, h]
        return reduce_from_tensor_model_parallel_region(out, self.parallel.tp_group)

    def extra_repr(self) -> str:
        return f"{self.num_embeddings}, {self.embedding_dim}, split {self.parallel.tp_size} ways"


def scaled_init_std(std: float, num_layers: int) -> float:
    """Megatron's init for layers whose outputs are added to the residual stream: ``std / √(2L)``."""
    return std / math.sqrt(2.0 * num_layers)
