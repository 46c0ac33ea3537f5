"""Each point-to-point op between pipeline stages on gloo: what is sent arrives at the right neighbour,
with its shape, and activations and gradients between the same pair never get mixed up."""
import pytest
import torch

from megapmc.parallel.state import initialize_parallel
from megapmc.pipeline_parallel import p2p
from megapmc.testing.distributed import run_distributed

SHAPE = (3, 2, 4)


def _value(stage, kind):
    return torch.full(SHAPE, 10.0 * stage + kind)


def _forward(s, r, last, dt):
    """send_forward / recv_forward: stage r to r + 1."""
    if r < last:
        p2p.send_forward(s, _value(r, 1))
    if r > 0:
        assert torch.equal(p2p.recv_forward(s, SHAPE, **dt), _value(r - 1, 1))


def _backward(s, r, last, dt):
    """send_backward / recv_backward: stage r to r - 1."""
    if r > 0:
        p2p.send_backward(s, _value(r, 2))
    if r < last:
        assert torch.equal(p2p.recv_backward(s, SHAPE, **dt), _value(r + 1, 2))


def _steady_state(s, r, last, dt):
    """The 1F1B pairs: even stage r sends forward and waits for a gradient, r + 1 sends it and waits
    for the activation."""
    if r % 2 == 0 and r < last:
        assert torch.equal(p2p.send_forward_recv_backward(s, _value(r, 3), SHAPE), _value(r + 1, 4))
    if r % 2 == 1:
        assert torch.equal(p2p.send_backward_recv_forward(s, _value(r, 4), SHAPE), _value(r - 1, 3))


def _ring(s, r, last, dt):
    """communicate with all four at once round the ring (the interleaved schedule): with two stages both
    neighbours are the same rank and both kinds travel each way, told apart by their tags."""
    n = last + 1
    from_prev, from_next = p2p.communicate(s, send_next=_value(r, 5), send_prev=_value(r, 6), recv_prev=SHAPE,
                                           recv_next=SHAPE, **dt)
    assert torch.equal(from_prev, _value((r - 1) % n, 5))
    assert torch.equal(from_next, _value((r + 1) % n, 6))


OPS = {"forward": _forward, "backward": _backward, "steady_state": _steady_state, "ring": _ring}


def _check(rank, world_size, op):
    s = initialize_parallel(pipeline_model_parallel_size=world_size)
    OPS[op](s, s.pp_rank, world_size - 1, dict(dtype=torch.float32, device="cpu"))


@pytest.mark.distributed
@pytest.mark.parametrize("op", list(OPS))
def test_p2p_op_on_four_stages(op):
    run_distributed(_check, 4, op)


@pytest.mark.distributed
def test_p2p_ring_on_two_stages():
    run_distributed(_check, 2, "ring")
