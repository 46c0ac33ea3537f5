"""Megatron-style data parallelism: gradients accumulate in a contiguous buffer, buckets reduce early.

Usage, one optimizer step over ``n`` micro-batches::

    ddp = DataParallel(model, config, parallel)
    for i, batch in enumerate(micro_batches):
        ctx = ddp.no_sync() if i < n - 1 else contextlib.nullcontext()
        with ctx:
            (ddp(**batch).mean() / n).backward()
    ddp.finish_grad_sync()      # waits for the bucket collectives launched during the last backward
    optimizer.step(lr)          # reads param.main_grad (or this rank's shard of it)
    optimizer.zero_grad()       # zeroes the buffer

Averaging: after ``finish_grad_sync`` every ``main_grad`` holds the MEAN over DP ranks of the
gradients accumulated on each rank. So if each rank backpropagates ``mean_loss(micro_batch) / n``,
the result is the gradient of the mean loss over the global batch (equal-sized micro-batches). For a
token-weighted mean (loss masks), backpropagate each micro-batch's loss SUM times
``dp_size / global_num_tokens``.

Tensor parallelism is the model's business: gradients that are partial across TP ranks (the norm
weights under sequence parallelism) are reduced inside the model's backward, so every DP group here
reduces ordinary, complete gradients.
"""
from __future__ import annotations

import contextlib
from typing import Iterator

import torch
import torch.distributed as dist
from torch import nn

from megapmc.optim.config import OptimizerConfig
from megapmc.optim.grad_buffer import GradBuffer
from megapmc.parallel.state import ParallelState


class DataParallel(nn.Module):
    """Wrap ``module`` for data-parallel training over ``parallel.dp_group``.

    The wrapper broadcasts DP rank 0's parameters at construction so every replica starts equal. With
    ``config.use_distributed_optimizer`` the parameters are moved into flat per-dtype buffers (their
    values kept) so the optimizer's all-gather lands directly in them; build the wrapper after the
    module is on its final device and dtype.
    """

    def __init__(self, module: nn.Module, config: OptimizerConfig, parallel: ParallelState):
        super().__init__()
        self.module = module
        self.config = config
        self.parallel = parallel
        by_dtype: dict[torch.dtype, list[nn.Parameter]] = {}
        for p in module.parameters():
            if p.requires_grad:
                by_dtype.setdefault(p.dtype, []).append(p)
        if not by_dtype:
            raise ValueError("DataParallel: the module has no trainable parameters")
        self.grad_buffers: list[GradBuffer] = []
        self._buffer_of: dict[int, GradBuffer] = {}
        for dtype, params in by_dtype.items():
            grad_dtype = torch.float32 if config.grad_reduce_in_fp32 else dtype
            buffer = GradBuffer(params, grad_dtype, config.bucket_size, parallel.dp_group, parallel.dp_size,
                                parallel.dp_rank, sharded=config.use_distributed_optimizer)
            self.grad_buffers.append(buffer)
            self._buffer_of.update({id(p): buffer for p in params})
        self._sync_enabled = True
        self._grads_synced = False
        self._hook_handles = [
            p.register_post_accumulate_grad_hook(self._grad_ready_hook) for ps in by_dtype.values() for p in ps
        ]
        if config.overlap_param_gather:
            self._register_param_sync_hooks(by_dtype)
        self._broadcast_params()

    def _register_param_sync_hooks(self, by_dtype: dict[torch.dtype, list[nn.Parameter]]) -> None:
        """Before a module's forward, wait for the all-gather of the buckets holding its parameters;
        before a state_dict, wait for all of them."""
        trainable = {id(p) for ps in by_dtype.values() for p in ps}
        for m in self.module.modules():
            buckets = {id(b): b for p in m.parameters(recurse=False) if id(p) in trainable
                       for b in [self._buffer_of[id(p)].bucket_of(p)]}
            if buckets:
                m.register_forward_pre_hook(_WaitForBuckets(list(buckets.values())))
        self.module.register_state_dict_pre_hook(lambda *_: self.finish_param_sync())

    def forward(self, *args, **kwargs):
        return self.module(*args, **kwargs)

    def no_sync(self) -> contextlib.AbstractContextManager:
        """Accumulate gradients into the buffer without any communication (non-last micro-batches)."""
        return self._grad_sync(False)

    def grad_sync(self) -> contextlib.AbstractContextManager:
        """Inside ``no_sync``: the backward run here is the last one of its parameters in this step (a
        pipeline model chunk's last micro-batch), so each bucket starts its reduction as soon as all of
        its gradients are final, overlapping the backwards still to come (with ``overlap_grad_reduce``)."""
        return self._grad_sync(True)

    @contextlib.contextmanager
    def _grad_sync(self, enabled: bool) -> Iterator[None]:
        previous, self._sync_enabled = self._sync_enabled, enabled
        try:
            yield
        finally:
            self._sync_enabled = previous

    def _grad_ready_hook(self, param: nn.Parameter) -> None:
        # Runs once per backward, after autograd has accumulated this parameter's gradient.
        bucket = self._buffer_of[id(param)].bucket_of(param)
        if bucket.grad_sync_started or self._grads_synced:
            raise RuntimeError(
                "DataParallel: a gradient arrived after its bucket was already reduced across data-parallel "
                "ranks; run every micro-batch but the last under ddp.no_sync(), and zero the gradients "
                "(optimizer.zero_grad()) before the next iteration's first backward"
            )
        param.main_grad.add_(param.grad)
        param.grad = None
        if self._sync_enabled and self.config.overlap_grad_reduce and bucket.mark_grad_ready(param):
            bucket.start_grad_sync(async_op=True)

    def finish_grad_sync(self) -> None:
        """Finish (or start and finish) every bucket's DP reduction; idempotent until the next
        ``zero_grad_buffer``. Buckets whose gradients were not all produced (unused parameters) are
        reduced as they are, the missing gradients counting as zero.
        """
        if self._grads_synced:
            return
        buckets = [b for buffer in self.grad_buffers for b in buffer.buckets]
        # Hooks started buckets in backward order, the same on every rank (same graph); the rest start
        # here in bucket order, also the same everywhere, so collectives match across the DP group.
        for bucket in buckets:
            bucket.start_grad_sync(async_op=True)
        for bucket in buckets:
            bucket.finish_grad_sync()
        self._grads_synced = True

    def zero_grad_buffer(self) -> None:
        """Zero the gradient buffers and reset the buckets for the next iteration."""
        for buffer in self.grad_buffers:
            buffer.reset()
        for p in self.module.parameters():
            p.grad = None
        self._grads_synced = False

    def start_param_sync(self) -> None:
        """Launch the all-gather of updated parameter shards (distributed optimizer), last bucket first:
        buckets are in backward order, so this is the order the next forward needs them."""
        for buffer in self.grad_buffers:
            for bucket in reversed(buffer.buckets):
                bucket.start_param_sync()

    def finish_param_sync(self) -> None:
        for buffer in self.grad_buffers:
            for bucket in buffer.buckets:
                bucket.finish_param_sync()

    def _broadcast_params(self) -> None:
        if self.parallel.dp_size == 1:
            return
        src = dist.get_global_rank(self.parallel.dp_group, 0)
        for buffer in self.grad_buffers:
            if buffer.param_data is not None:
                dist.broadcast(buffer.param_data, src=src, group=self.parallel.dp_group)
            else:
                for p in buffer.params:
                    dist.broadcast(p.data, src=src, group=self.parallel.dp_group)

    # The wrapped module's names, without a "module." prefix, so checkpoints do not depend on wrapping.
    def state_dict(self, *args, **kwargs):
        return self.module.state_dict(*args, **kwargs)

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        if assign:
            raise ValueError("DataParallel.load_state_dict(assign=True) would detach the parameters from "
                             "the gradient buffer; load with assign=False")
        return self.module.load_state_dict(state_dict, strict=strict)


class _WaitForBuckets:
    """Forward pre-hook: finish the parameter all-gather of these buckets (a no-op once finished)."""

    def __init__(self, buckets):
        self.buckets = buckets

    def __call__(self, module, args):
        for bucket in self.buckets:
            bucket.finish_param_sync()
