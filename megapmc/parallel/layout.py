"""How a parameter's full tensor is cut across tensor-parallel ranks: the one table of tensor layouts.

Each parallel layer declares the layout of its weight (``weight_layout``): the full shape, the dimension
split across TP ranks, the logical tensors fused along it (q/k/v, gate/up: each block is split on its
own, so a rank holds ``[block0_local; block1_local; ...]``), and Megatron's vocabulary padding. The
layer's own ``shard``, conversion and resharding all cut and join tensors through it
(:func:`param_layouts` reads them off a model), so a layout is written down once.

A layout does not depend on the TP size: ``shape`` is the real, unpadded full tensor, and the padding
(zeros after the real rows, up to a multiple of ``pad_to_multiple_of × tp``) is derived per TP size.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


def padded_size(size: int, multiple: int, tp: int) -> int:
    """``size`` rounded up to a multiple of ``multiple × tp`` (Megatron's vocabulary padding: every TP rank
    holds an equal, aligned slice)."""
    step = multiple * tp
    return -(-size // step) * step


@dataclass(frozen=True)
class TensorLayout:
    """A full tensor of ``shape`` and how TP ranks hold it.

    ``split_dim``: the dimension cut into ``tp`` contiguous pieces (``None``: every rank holds all of it).
    ``blocks``: sizes along ``split_dim`` of the logical tensors fused in it, in order; each is cut on its
    own (``None``: one block). ``pad_to_multiple_of``: ``split_dim`` is padded with zeros to a multiple of
    it × tp before cutting (the vocabulary of the embedding and output layer); one block only.
    """

    shape: tuple[int, ...]
    split_dim: int | None = None
    blocks: tuple[int, ...] | None = None
    pad_to_multiple_of: int | None = None

    def __post_init__(self):
        if self.split_dim is None and (self.blocks is not None or self.pad_to_multiple_of is not None):
            raise ValueError("a replicated layout has neither blocks nor padding")
        if self.blocks is not None:
            if sum(self.blocks) != self.shape[self.split_dim]:
                raise ValueError(f"blocks {self.blocks} do not add up to dimension {self.split_dim} of {self.shape}")
            if self.pad_to_multiple_of is not None:
                raise ValueError("padding applies to a layout of one block")

    @property
    def replicated(self) -> bool:
        return self.split_dim is None

    def block_sizes(self, tp: int) -> list[int]:
        """Full sizes of the blocks along ``split_dim`` at TP size ``tp``, the padding included."""
        if self.blocks is not None:
            return list(self.blocks)
        size = self.shape[self.split_dim]
        return [size if self.pad_to_multiple_of is None else padded_size(size, self.pad_to_multiple_of, tp)]

    def local_block_sizes(self, tp: int) -> list[int]:
        """One TP rank's rows of each block."""
        sizes = self.block_sizes(tp)
        for size in sizes:
            if size % tp:
                raise ValueError(f"dimension {self.split_dim} of a {list(self.shape)} tensor ({size}) is not "
                                 f"divisible by the tensor-parallel size {tp}")
        return [size // tp for size in sizes]

    def padded_shape(self, tp: int) -> tuple[int, ...]:
        """The full tensor as the TP ranks hold it together: padding rows included."""
        if self.replicated:
            return self.shape
        shape = list(self.shape)
        shape[self.split_dim] = sum(self.block_sizes(tp))
        return tuple(shape)

    def local_shape(self, tp: int) -> tuple[int, ...]:
        """One TP rank's parameter."""
        if self.replicated:
            return self.shape
        shape = list(self.shape)
        shape[self.split_dim] = sum(self.local_block_sizes(tp))
        return tuple(shape)

    def _pad(self, full: torch.Tensor, tp: int) -> torch.Tensor:
        """``full`` with zero rows appended up to the padded size (a tensor already padded is kept as is)."""
        target = self.block_sizes(tp)[0]
        extra = target - full.shape[self.split_dim]
        if extra < 0:
            raise ValueError(f"dimension {self.split_dim} has {full.shape[self.split_dim]} entries, more than "
                             f"the padded size {target}")
        if extra == 0:
            return full
        pad_shape = list(full.shape)
        pad_shape[self.split_dim] = extra
        return torch.cat([full, full.new_zeros(pad_shape)], dim=self.split_dim)

    def _cut(self, blocks: list[torch.Tensor], tp: int, rank: int) -> torch.Tensor:
        """Rank ``rank``'s piece of each full block, concatenated: ``[block0_local; block1_local; ...]``."""
        local = self.local_block_sizes(tp)
        pieces = [blk.narrow(self.split_dim, rank * n, n) for blk, n in zip(blocks, local)]
        return pieces[0] if len(pieces) == 1 else torch.cat(pieces, dim=self.split_dim)

    def shard(self, full: torch.Tensor, tp: int, rank: int) -> torch.Tensor:
        """TP rank ``rank``'s piece of ``full`` (real or padded size along ``split_dim``)."""
        if self.replicated:
            return full
        if self.pad_to_multiple_of is not None:
            full = self._pad(full, tp)
        return self._cut(list(full.split(self.block_sizes(tp), dim=self.split_dim)), tp, rank)

    def split_parts(self, parts: list[torch.Tensor], tp: int) -> list[torch.Tensor]:
        """The logical tensors (``[q, k, v]``, or ``[full]``) -> the ``tp`` ranks' pieces, contiguous and
        ready to write, without building the fused full tensor."""
        if self.replicated:
            return [parts[0]] * tp
        if self.pad_to_multiple_of is not None:
            parts = [self._pad(parts[0], tp)]
        return [self._cut(parts, tp, r).contiguous() for r in range(tp)]

    def split(self, full: torch.Tensor, tp: int) -> list[torch.Tensor]:
        """``full`` -> the ``tp`` ranks' pieces."""
        return self.split_parts(self.unfuse(full), tp)

    def merge_parts(self, shards: list[torch.Tensor], name: str = "tensor") -> list[torch.Tensor]:
        """Inverse of :meth:`split_parts`: the real logical tensors (padding dropped). A replicated tensor
        must be identical on every rank; a difference means a corrupt checkpoint."""
        if self.replicated:
            for r, s in enumerate(shards[1:], start=1):
                if not torch.equal(s, shards[0]):
                    raise ValueError(f"replicated parameter {name} differs between TP rank 0 and TP rank {r}")
            return [shards[0]]
        pieces = [s.split(self.local_block_sizes(len(shards)), dim=self.split_dim) for s in shards]  # tp × blocks
        blocks = [torch.cat([p[j] for p in pieces], dim=self.split_dim) for j in range(len(pieces[0]))]
        if self.pad_to_multiple_of is not None:
            blocks = [blocks[0].narrow(self.split_dim, 0, self.shape[self.split_dim])]
        return blocks

    def merge(self, shards: list[torch.Tensor], name: str = "tensor") -> torch.Tensor:
        """Inverse of :meth:`split`: the real full tensor."""
        return self.fuse(self.merge_parts(shards, name))

    def unfuse(self, full: torch.Tensor) -> list[torch.Tensor]:
        """The logical tensors fused in ``full`` (``[q, k, v]``), or ``[full]``."""
        if self.blocks is None:
            return [full]
        return list(full.split(self.blocks, dim=self.split_dim))

    def fuse(self, parts: list[torch.Tensor]) -> torch.Tensor:
        """Inverse of :meth:`unfuse`."""
        return parts[0] if len(parts) == 1 else torch.cat(parts, dim=self.split_dim)

    def part_shapes(self) -> list[tuple[int, ...]]:
        """Shapes of the logical tensors :meth:`unfuse` returns."""
        if self.blocks is None:
            return [self.shape]
        shapes = []
        for size in self.blocks:
            shape = list(self.shape)
            shape[self.split_dim] = size
            shapes.append(tuple(shape))
        return shapes


def param_layouts(model: nn.Module) -> dict[str, TensorLayout]:
    """Every parameter name of ``model`` -> the layout its module declares (``<param>_layout``, e.g.
    ``weight_layout``). A parameter without one is an error, never silently taken as replicated."""
    out = {}
    for module_name, module in model.named_modules():
        for param_name, _ in module.named_parameters(recurse=False):
            layout = getattr(module, f"{param_name}_layout", None)
            name = f"{module_name}.{param_name}" if module_name else param_name
            if not isinstance(layout, TensorLayout):
                raise TypeError(f"{name}: {type(module).__name__} declares no {param_name}_layout")
            out[name] = layout
    return out
