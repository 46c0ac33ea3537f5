"""DataParallel on gloo: no communication in no_sync, bucket collectives launched from the backward
hooks of the last micro-batch, each rank left with the DP mean of its accumulated gradients."""
import pytest
import torch
from torch import nn

import megapmc.optim.grad_buffer as grad_buffer
from megapmc.optim import DataParallel, OptimizerConfig
from megapmc.parallel.state import initialize_parallel
from megapmc.testing.distributed import run_distributed

pytestmark = pytest.mark.distributed


class Chain(nn.Module):
    def __init__(self, width=8, depth=4):
        super().__init__()
        self.layers = nn.ModuleList(nn.Linear(width, width, bias=False) for _ in range(depth))
        self.scale = nn.Parameter(torch.ones(width))

    def forward(self, x):
        for layer in self.layers:
            x = torch.tanh(layer(x))
        return (x * self.scale).sum()


def _counting(monkeypatch_target, name, calls):
    original = getattr(monkeypatch_target, name)

    def wrapper(*args, **kwargs):
        calls.append(name)
        return original(*args, **kwargs)

    setattr(monkeypatch_target, name, wrapper)
    return original


def _communication_only_on_the_last_micro_batch(parallel, distributed, overlap):
    calls = []
    originals = {
        "reduce_scatter_single": _counting(grad_buffer, "reduce_scatter_single", calls),
        "all_reduce": _counting(grad_buffer.dist, "all_reduce", calls),
    }
    try:
        torch.manual_seed(0)
        config = OptimizerConfig(bucket_size=100, use_distributed_optimizer=distributed, overlap_grad_reduce=overlap)
        ddp = DataParallel(Chain(), config, parallel)
        buckets = [b for buf in ddp.grad_buffers for b in buf.buckets]
        assert len(buckets) >= 3
        x = torch.randn(2, 8) + parallel.dp_rank
        with ddp.no_sync():
            ddp(x).backward()
            ddp(x).backward()
        assert calls == [] and not any(b.grad_sync_started for b in buckets)
        ddp(x).backward()
        if overlap:  # launched by the hooks while backward ran, before anyone asked
            assert all(b.grad_sync_started for b in buckets) and len(calls) == len(buckets)
        else:
            assert calls == []
        ddp.finish_grad_sync()
        assert len(calls) == len(buckets)
        ddp.finish_grad_sync()  # idempotent
        assert len(calls) == len(buckets)
        # Every rank now holds the DP mean of the 3 accumulated micro-batch gradients (its own shard).
        ref = Chain()
        ref.load_state_dict(ddp.module.state_dict())
        for r in range(parallel.dp_size):  # rank r saw x_r = base + r, three times
            (ref(x - parallel.dp_rank + r) * 3 / parallel.dp_size).backward()
        ref_of = dict(zip(map(id, ddp.module.parameters()), ref.parameters()))
        for buf in ddp.grad_buffers:
            for bucket in buf.buckets:
                lo, hi = bucket.shard_range()
                for p in bucket.params:
                    r = buf.param_ranges[id(p)]
                    a, b = max(r.start, bucket.start + lo), min(r.end, bucket.start + hi)
                    if a < b:  # the part of p this rank owns
                        expected = ref_of[id(p)].grad.view(-1)[a - r.start:b - r.start]
                        torch.testing.assert_close(buf.grad_data[a:b], expected)
    finally:
        for name, fn in originals.items():
            setattr(grad_buffer if name == "reduce_scatter_single" else grad_buffer.dist, name, fn)


def _cases(rank, world_size):
    dp = initialize_parallel(tensor_model_parallel_size=1)
    for distributed in (False, True):
        for overlap in (True, False):
            _communication_only_on_the_last_micro_batch(dp, distributed, overlap)


@pytest.mark.slow
def test_data_parallel_communication_pattern():
    run_distributed(_cases, 2)
