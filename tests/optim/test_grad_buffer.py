"""Layout of the contiguous gradient/parameter buffer and its buckets (no processes needed)."""
import pytest
import torch
from torch import nn

from megapmc.optim.grad_buffer import GradBuffer


def _params(*shapes, dtype=torch.float32):
    torch.manual_seed(0)
    return [nn.Parameter(torch.randn(*s, dtype=dtype)) for s in shapes]


def test_main_grads_are_views_of_one_buffer_in_backward_order():
    params = _params((4, 3), (5,), (2, 2))
    buffer = GradBuffer(params, torch.float32, bucket_size=None)
    assert buffer.numel == 12 + 5 + 4
    assert [r.start for r in (buffer.param_ranges[id(p)] for p in params)] == [9, 4, 0]  # last param first
    for p in params:
        assert p.main_grad.shape == p.shape
        assert p.main_grad.untyped_storage().data_ptr() == buffer.grad_data.untyped_storage().data_ptr()
        p.main_grad.fill_(1.0)
    assert buffer.grad_data.sum().item() == buffer.numel
    buffer.reset()
    assert buffer.grad_data.abs().sum().item() == 0.0


def test_buckets_close_once_full_and_never_split_a_parameter():
    params = _params((10,), (10,), (10,), (30,), (5,))
    buffer = GradBuffer(params, torch.float32, bucket_size=20)
    # Reverse order 5, 30, 10, 10, 10: [5, 30] reaches 20, then [10, 10], then [10].
    assert [[p.numel() for p in b.params] for b in buffer.buckets] == [[5, 30], [10, 10], [10]]
    assert [(b.start, b.end) for b in buffer.buckets] == [(0, 35), (35, 55), (55, 65)]
    for b in buffer.buckets:
        assert all(buffer.bucket_of(p) is b for p in b.params)


@pytest.mark.parametrize("dp_size", [1, 2, 4])
def test_sharded_buckets_split_evenly_and_keep_parameter_values(dp_size):
    params = _params((7, 3), (100,), (33,), dtype=torch.bfloat16)
    values = [p.detach().clone() for p in params]
    buffer = GradBuffer(params, torch.float32, bucket_size=50, dp_size=dp_size, sharded=True)
    assert buffer.param_data.dtype == torch.bfloat16 and buffer.grad_data.dtype == torch.float32
    for p, v in zip(params, values):
        torch.testing.assert_close(p.detach(), v, rtol=0, atol=0)
        assert p.untyped_storage().data_ptr() == buffer.param_data.untyped_storage().data_ptr()
        assert buffer.param_ranges[id(p)].start % 64 == 0  # aligned starts
    for bucket in buffer.buckets:
        assert bucket.numel % (dp_size * 64) == 0
        # Shards tile the bucket.
        ranges = []
        for r in range(dp_size):
            bucket.dp_rank = r
            ranges.append(bucket.shard_range())
        assert ranges[0][0] == 0 and ranges[-1][1] == bucket.numel
        assert all(a[1] == b[0] for a, b in zip(ranges, ranges[1:]))


def test_bucket_reports_ready_only_when_all_its_grads_are():
    params = _params((3,), (4,))
    bucket = GradBuffer(params, torch.float32, bucket_size=None).buckets[0]
    assert not bucket.mark_grad_ready(params[0])
    assert bucket.mark_grad_ready(params[1])
    bucket.reset()
    assert not bucket.mark_grad_ready(params[1])


def test_rejects_mixed_dtypes():
    with pytest.raises(ValueError, match="one dtype"):
        GradBuffer(_params((2,)) + _params((2,), dtype=torch.bfloat16), torch.float32, None)
