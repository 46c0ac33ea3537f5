"""Point-to-point exchange between neighbouring pipeline stages: activations forward, their gradients
backward. All of it goes through ``communicate``, one ``batch_isend_irecv`` per call (NCCL and gloo),
so a stage that sends to its next neighbour while receiving from it never deadlocks on ordering.

Neighbours are cyclic (``ParallelState.pipeline_next_rank``): the interleaved schedule sends the last
rank's activations on to the first rank's next model chunk. Activations travel with tag
``FORWARD_TAG``, gradients with ``BACKWARD_TAG``: with two stages both kinds can flow between the same
pair in the same direction, and the tag keeps each receive matched to its kind (NCCL ignores tags; the
schedules also post sends and receives in the same order on both sides).

Tensors are ``[s, b, h]`` (``[s/tp, b, h]`` under sequence parallelism); a receive allocates a fresh
buffer of the given shape, which the schedule turns into the stage's input (``requires_grad``).
"""
from __future__ import annotations

import torch
import torch.distributed as dist

from megapmc.parallel.state import ParallelState

FORWARD_TAG = 1
BACKWARD_TAG = 2

Shape = tuple[int, ...]


def communicate(parallel: ParallelState, *, send_next: torch.Tensor | None = None,
                send_prev: torch.Tensor | None = None, recv_prev: Shape | None = None,
                recv_next: Shape | None = None, dtype: torch.dtype = torch.float32,
                device: torch.device | str = "cpu") -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """Send activations to the next stage and/or gradients to the previous one, receive activations
    of shape ``recv_prev`` from the previous stage and/or gradients of shape ``recv_next`` from the
    next; wait for all of it. Returns ``(from_prev, from_next)`` (``None`` where nothing was received)."""
    from_prev = None if recv_prev is None else torch.empty(recv_prev, dtype=dtype, device=device)
    from_next = None if recv_next is None else torch.empty(recv_next, dtype=dtype, device=device)
    group, nxt, prev = parallel.pp_group, parallel.pipeline_next_rank, parallel.pipeline_prev_rank
    # Even stages send first, odd stages receive first (Megatron's order): on a transport that blocks on
    # a send until its receive is posted, neighbours never both wait to send.
    sends, recvs = [], []
    if send_next is not None:
        sends.append(dist.P2POp(dist.isend, send_next.contiguous(), nxt, group, FORWARD_TAG))
    if send_prev is not None:
        sends.append(dist.P2POp(dist.isend, send_prev.contiguous(), prev, group, BACKWARD_TAG))
    if from_prev is not None:
        recvs.append(dist.P2POp(dist.irecv, from_prev, prev, group, FORWARD_TAG))
    if from_next is not None:
        recvs.append(dist.P2POp(dist.irecv, from_next, nxt, group, BACKWARD_TAG))
    ops = sends + recvs if parallel.pp_rank % 2 == 0 else recvs + sends
    if ops:
        for request in dist.batch_isend_irecv(ops):
            request.wait()
    return from_prev, from_next


def recv_forward(parallel: ParallelState, shape: Shape, dtype, device) -> torch.Tensor:
    """The previous stage's output activations ``shape`` (this stage's input)."""
    return communicate(parallel, recv_prev=shape, dtype=dtype, device=device)[0]


def send_forward(parallel: ParallelState, output: torch.Tensor) -> None:
    """This stage's output activations to the next stage."""
    communicate(parallel, send_next=output.detach())


def recv_backward(parallel: ParallelState, shape: Shape, dtype, device) -> torch.Tensor:
    """The gradient of the loss with respect to this stage's output, from the next stage."""
    return communicate(parallel, recv_next=shape, dtype=dtype, device=device)[1]


def send_backward(parallel: ParallelState, input_grad: torch.Tensor) -> None:
    """The gradient with respect to this stage's input, to the previous stage."""
    communicate(parallel, send_prev=input_grad)


def send_forward_recv_backward(parallel: ParallelState, output: torch.Tensor, shape: Shape) -> torch.Tensor:
    """1F1B steady state, after a forward: send the output on, get the gradient of an earlier output."""
    return communicate(parallel, send_next=output.detach(), recv_next=shape, dtype=output.dtype,
                       device=output.device)[1]


def send_backward_recv_forward(parallel: ParallelState, input_grad: torch.Tensor, shape: Shape) -> torch.Tensor:
    """1F1B steady state, after a backward: send the input gradient back, get the next input."""
    return communicate(parallel, send_prev=input_grad, recv_prev=shape, dtype=input_grad.dtype,
                       device=input_grad.device)[0]
