"""Contiguous gradient (and parameter) buffers cut into buckets for data-parallel reduction.

Every trainable parameter of one dtype gets a slice of one flat buffer: ``param.main_grad`` is a view
into the gradient buffer (fp32 by default), so gradients of all micro-batches accumulate there with no
communication at all. On the last micro-batch each bucket is reduced across the data-parallel group as
soon as every gradient in it is final (launched from a backward hook, asynchronously): an all-reduce,
or a reduce-scatter when the distributed optimizer only needs this rank's shard. For the distributed
optimizer the parameters themselves also live in one flat buffer, so that the all-gather after the
step writes straight into them.

Parameters are laid out in reverse registration order: backward produces the last layers' gradients
first, so the first bucket fills (and starts communicating) first.

This module knows nothing about the model: it sees a list of parameters and a process group.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.distributed as dist

from megapmc.parallel.mappings import all_gather_single, reduce_scatter_single


# Parameter starts and shard boundaries are aligned to this many elements when the buffer is sharded,
# so every rank's shard and every parameter view starts on an aligned address.
_ALIGN = 64


@dataclass(frozen=True)
class ParamRange:
    """Where one parameter lives: ``[start, end)`` in the flat buffer, and its bucket."""

    start: int
    end: int
    bucket_index: int


class Bucket:
    """A contiguous run of parameters whose gradients are reduced by one collective.

    With ``sharded`` the bucket's length is a multiple of the DP size and DP rank ``r`` owns elements
    ``[r·n/dp, (r+1)·n/dp)`` of it; after the reduce-scatter only that shard holds the reduced
    gradient.
    """

    def __init__(self, params: list[torch.nn.Parameter], start: int, end: int, grad_data: torch.Tensor,
                 param_data: torch.Tensor | None, dp_group, dp_size: int, dp_rank: int, sharded: bool):
        self.params = params
        self.start, self.end = start, end
        self.grad_data = grad_data[start:end]  # [n]
        self.param_data = None if param_data is None else param_data[start:end]  # [n]
        self.dp_group, self.dp_size, self.dp_rank = dp_group, dp_size, dp_rank
        self.sharded = sharded
        self._pending: set[int] = set()
        self._grad_handle = None
        self._param_handle = None
        self.grad_sync_started = False
        self.reset()

    @property
    def numel(self) -> int:
        return self.end - self.start

    def shard_range(self) -> tuple[int, int]:
        """This DP rank's ``[start, end)`` within the bucket (the whole bucket when not sharded)."""
        if not self.sharded:
            return 0, self.numel
        size = self.numel // self.dp_size
        return self.dp_rank * size, (self.dp_rank + 1) * size

    def reset(self) -> None:
        """Forget the previous iteration's state (the buffer itself is zeroed by its owner)."""
        self._pending = {id(p) for p in self.params}
        self._grad_handle = None
        self.grad_sync_started = False

    def mark_grad_ready(self, param: torch.nn.Parameter) -> bool:
        """Record that ``param``'s gradient is final; True once every gradient in the bucket is."""
        self._pending.discard(id(param))
        return not self._pending

    def start_grad_sync(self, async_op: bool) -> None:
        """Average the bucket's gradients over the DP group (all-reduce, or reduce-scatter if sharded)."""
        if self.grad_sync_started:
            return
        self.grad_sync_started = True
        if self.dp_size == 1:
            return
        # Pre-divide and sum (NCCL's AVG is not on gloo); dividing first also keeps bf16 sums in range.
        self.grad_data.div_(self.dp_size)
        if self.sharded:
            lo, hi = self.shard_range()
            # [n] -> [n/dp]: in place, this rank's shard of the buffer receives the reduced values.
            self._grad_handle = reduce_scatter_single(self.grad_data[lo:hi], self.grad_data, group=self.dp_group,
                                                async_op=async_op)
        else:
            self._grad_handle = dist.all_reduce(self.grad_data, group=self.dp_group, async_op=async_op)

    def finish_grad_sync(self) -> None:
        self.start_grad_sync(async_op=False)
        if self._grad_handle is not None:
            self._grad_handle.wait()
            self._grad_handle = None

    def start_param_sync(self) -> None:
        """All-gather the updated parameter shards of every DP rank into the parameter buffer."""
        if not self.sharded or self.dp_size == 1:
            return
        lo, hi = self.shard_range()
        # [n/dp] from each rank -> [n], in place.
        self._param_handle = all_gather_single(self.param_data, self.param_data[lo:hi], group=self.dp_group,
                                         async_op=True)

    @property
    def param_sync_pending(self) -> bool:
        return self._param_handle is not None

    def finish_param_sync(self) -> None:
        if self._param_handle is not None:
            self._param_handle.wait()
            self._param_handle = None


class GradBuffer:
    """One flat gradient buffer (and, when ``sharded``, one flat parameter buffer) for parameters of
    one dtype, cut into buckets of about ``bucket_size`` elements.

    After construction ``param.main_grad`` is a view into ``grad_data``; with ``sharded`` the
    parameter's storage is moved into ``param_data`` (its values are kept). Move the module to its
    device and dtype before building the buffer: replacing ``param.data`` afterwards breaks the views.
    """

    def __init__(self, params: list[torch.nn.Parameter], grad_dtype: torch.dtype, bucket_size: int | None,
                 dp_group=None, dp_size: int = 1, dp_rank: int = 0, sharded: bool = False):
        if not params:
            raise ValueError("GradBuffer needs at least one parameter")
        dtypes = {p.dtype for p in params}
        devices = {p.device for p in params}
        if len(dtypes) != 1 or len(devices) != 1:
            raise ValueError(f"GradBuffer parameters must share one dtype and device, got {dtypes} on {devices}")
        self.param_dtype = params[0].dtype
        self.grad_dtype = grad_dtype
        self.device = params[0].device
        self.sharded = sharded
        self.dp_size = dp_size
        # Sharded buckets end on a multiple of dp·_ALIGN so each rank's shard has the same aligned length.
        bucket_multiple = dp_size * _ALIGN if sharded else 1
        param_align = _ALIGN if sharded else 1

        self.params = list(reversed(params))  # backward order: the first bucket fills first
        self.param_ranges: dict[int, ParamRange] = {}
        bucket_bounds: list[tuple[int, int, list[torch.nn.Parameter]]] = []
        offset = bucket_start = 0
        bucket_params: list[torch.nn.Parameter] = []
        for p in self.params:
            offset = _round_up(offset, param_align)
            self.param_ranges[id(p)] = ParamRange(offset, offset + p.numel(), len(bucket_bounds))
            offset += p.numel()
            bucket_params.append(p)
            if bucket_size is not None and offset - bucket_start >= bucket_size:
                offset = _round_up(offset, bucket_multiple)
                bucket_bounds.append((bucket_start, offset, bucket_params))
                bucket_start, bucket_params = offset, []
        if bucket_params:
            offset = _round_up(offset, bucket_multiple)
            bucket_bounds.append((bucket_start, offset, bucket_params))
        self.numel = offset

        self.grad_data = torch.zeros(self.numel, dtype=grad_dtype, device=self.device)
        self.param_data = None
        if sharded:
            self.param_data = torch.zeros(self.numel, dtype=self.param_dtype, device=self.device)
        for p in self.params:
            r = self.param_ranges[id(p)]
            p.main_grad = self.grad_data[r.start:r.end].view(p.shape)
            if sharded:
                view = self.param_data[r.start:r.end].view(p.shape)
                view.copy_(p.data)
                p.data = view
        self.buckets = [
            Bucket(ps, lo, hi, self.grad_data, self.param_data, dp_group, dp_size, dp_rank, sharded)
            for lo, hi, ps in bucket_bounds
        ]

    def bucket_of(self, param: torch.nn.Parameter) -> Bucket:
        return self.buckets[self.param_ranges[id(param)].bucket_index]

    def reset(self) -> None:
        """Zero the gradients and the buckets' state for the next iteration."""
        self.grad_data.zero_()
        for bucket in self.buckets:
            bucket.reset()


def _round_up(x: int, multiple: int) -> int:
    return -(-x // multiple) * multiple
