"""Per-TP-rank RNG streams: distinct across TP ranks, shared outside the TP region, replayed by recompute."""
import torch
import torch.nn.functional as F

from megapmc.model.recompute import checkpoint
from megapmc.parallel import ParallelState
from megapmc.parallel.random import RNGStatesTracker, model_parallel_seed


def _dropout_mask(tracker):
    with tracker.fork():
        return F.dropout(torch.ones(1000), p=0.5)


def test_streams_differ_across_tp_ranks_and_default_is_shared():
    masks, defaults = [], []
    for rank in range(2):
        tracker = model_parallel_seed(5, ParallelState.for_shapes(tp=2, tp_rank=rank))
        masks.append(_dropout_mask(tracker))
        defaults.append(torch.rand(4))
    assert not torch.equal(masks[0], masks[1])
    assert torch.equal(defaults[0], defaults[1])


def test_fork_leaves_the_default_stream_untouched():
    tracker = model_parallel_seed(1, ParallelState.single())
    torch.manual_seed(3)
    expected = torch.rand(3)
    torch.manual_seed(3)
    _dropout_mask(tracker)
    assert torch.equal(torch.rand(3), expected)
    first, second = _dropout_mask(tracker), _dropout_mask(tracker)
    assert not torch.equal(first, second), "the tracked stream advances"


def test_recompute_replays_tracked_dropout():
    def block(x, tracker):
        with tracker.fork():
            return F.dropout(x * 2.0, p=0.5).sum(-1)

    x = torch.randn(8, 64)
    grads = []
    for recompute in (False, True):
        tracker = RNGStatesTracker()
        tracker.add("model-parallel-rng", 11)
        xi = x.clone().requires_grad_(True)
        y = checkpoint(block, xi, tracker, rng_tracker=tracker) if recompute else block(xi, tracker)
        _dropout_mask(tracker)  # the stream moves on before backward, as later layers would
        y.sum().backward()
        grads.append(xi.grad)
    torch.testing.assert_close(grads[1], grads[0], rtol=0, atol=0)
