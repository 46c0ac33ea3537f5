"""The distributed optimizer (ZeRO-1): fp32 master weights and Adam states sharded across DP ranks.

Each bucket of the gradient buffer is split into ``dp`` equal contiguous shards; DP rank ``r`` owns
shard ``r`` of every bucket. The backward reduce-scatters each bucket so rank ``r`` receives the
averaged gradients of its shard only; AdamW updates the master weights of that shard; the updated
parameters are cast into the shared parameter buffer and all-gathered bucket by bucket. A parameter
that straddles a shard boundary is split: each rank optimises the elements it owns.

Memory per rank, for ``P`` parameters in bf16: 2P (weights) + 4P (fp32 gradient buffer)
+ 12P/dp (fp32 master, exp_avg, exp_avg_sq), against 2P + 4P + 12P without sharding.
"""
from __future__ import annotations

from megapmc.optim.config import OptimizerConfig
from megapmc.optim.optimizer import MixedPrecisionOptimizer
from megapmc.parallel.state import ParallelState


class DistributedOptimizer(MixedPrecisionOptimizer):
    """``MixedPrecisionOptimizer`` restricted to this DP rank's shard of every bucket."""

    def __init__(self, ddp, config: OptimizerConfig, parallel: ParallelState):
        if not all(buffer.sharded for buffer in ddp.grad_buffers):
            raise ValueError("DistributedOptimizer needs DataParallel built with use_distributed_optimizer=True "
                             "(its buckets must be sharded across data-parallel ranks)")
        super().__init__(ddp, config, parallel)

    def _owned_ranges(self):
        for buffer in self.ddp.grad_buffers:
            for bucket in buffer.buckets:
                lo, hi = bucket.shard_range()
                lo, hi = bucket.start + lo, bucket.start + hi  # buffer coordinates
                for p in bucket.params:
                    r = buffer.param_ranges[id(p)]
                    start, end = max(r.start, lo), min(r.end, hi)
                    if start < end:
                        yield p, start - r.start, end - r.start

    def _norm_groups(self) -> list:
        # Shards are disjoint across DP, so their squared sums add over DP as well as over TP.
        groups = super()._norm_groups()
        if self.parallel.dp_size > 1:
            groups.append(self.parallel.dp_group)
        return groups

    def _sync_params(self) -> None:
        self.ddp.start_param_sync()
        if not self.config.overlap_param_gather:
            self.ddp.finish_param_sync()


def build_optimizer(ddp, config: OptimizerConfig, parallel: ParallelState) -> MixedPrecisionOptimizer:
    """The optimizer ``config`` asks for, over the parameters of ``ddp`` (a ``DataParallel``)."""
    if config.use_distributed_optimizer:
        return DistributedOptimizer(ddp, config, parallel)
    return MixedPrecisionOptimizer(ddp, config, parallel)
