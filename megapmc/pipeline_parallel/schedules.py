"""Forward/backward schedules over the micro-batches of one global batch (Megatron-Core's three).

* ``forward_backward_no_pipelining`` (PP = 1): one micro-batch after the other.
* ``forward_backward_pipelining_without_interleaving`` (1F1B): stage ``r`` runs ``P - r - 1`` warm-up
  forwards, then alternates one forward and one backward, then drains the backwards. At most ``P - r``
  micro-batches are in flight on stage ``r``; the bubble is ``(P - 1) / (m + P - 1)`` of the time.
* ``forward_backward_pipelining_with_interleaving``: each rank holds ``V`` model chunks and the
  micro-batches go round the ranks ``V`` times, shrinking the bubble to ``(P - 1) / (V·m + P - 1)``
  (``bubble_fraction``); Megatron's schedule, which needs ``m % P == 0`` (``pad_micro_batches`` makes
  any step fit, with masked rows).

Every schedule takes ``(model, ddp, micro_batches, parallel, scale, forward_only, timer=None)`` and
returns the sum over the micro-batches of ``sum(per-token loss × loss_mask)`` (fp32, on every rank: the
last stage's sum is all-reduced over the pipeline group). Backward runs on ``that sum × scale``; the
trainer picks ``scale = dp / global token count``, so the gradient is the token mean over the global
batch. Gradients accumulate under ``ddp.no_sync()``, except each model chunk's last backward (micro-batch
``m - 1``), run under ``ddp.grad_sync()``: with ``--overlap-grad-reduce`` its buckets start their DP
reduction from the backward hooks as soon as they are final, while the other chunks' backwards and the
pipeline's drain go on (Megatron's overlap); the caller's ``ddp.finish_grad_sync()`` waits for them and
reduces whatever did not start. A ``timeline.ComputeTimer`` as ``timer`` records every forward and
backward (``benchmarks/bench_pipeline.py``); without one nothing is timed.
"""
from __future__ import annotations

import contextlib
from typing import Callable

import torch
import torch.distributed as dist

from megapmc.parallel.state import ParallelState
from megapmc.pipeline_parallel import p2p
from megapmc.pipeline_parallel.config import PipelineConfig
from megapmc.pipeline_parallel.stage import activation_shape, model_chunks, stage_forward
from megapmc.pipeline_parallel.timeline import ComputeTimer

ForwardBackwardFunc = Callable[..., torch.Tensor]


def bubble_fraction(pipeline_size: int, num_micro_batches: int, num_model_chunks: int = 1) -> float:
    """The share of a pipelined step each stage spends idle (Narayanan et al., 2021): ``P - 1`` chunk
    passes of fill and drain, each ``1/V`` of a stage's work, against ``m`` micro-batches of work."""
    p, m, v = pipeline_size, num_micro_batches, num_model_chunks
    return (p - 1) / (v * m + p - 1)


def check_num_micro_batches(pipeline: PipelineConfig, num_layers: int, num_micro_batches: int) -> None:
    """Raise a ValueError naming the flags when the schedule cannot run this many micro-batches."""
    p = pipeline.pipeline_model_parallel_size
    if pipeline.num_model_chunks(num_layers) > 1 and num_micro_batches % p:
        raise ValueError(
            f"the interleaved schedule (--num-layers-per-virtual-pipeline-stage) needs the number of micro-batches "
            f"per DP rank ({num_micro_batches} = --global-batch-size / (--micro-batch-size x DP)) to be a multiple "
            f"of --pipeline-model-parallel-size {p}; change the global batch size")


def micro_batch_multiple(pipeline: PipelineConfig, num_layers: int) -> int:
    """The schedule runs a multiple of this many micro-batches: P when interleaved, else 1."""
    return pipeline.pipeline_model_parallel_size if pipeline.num_model_chunks(num_layers) > 1 else 1


def pad_micro_batches(micro_batches: list[dict], micro_batch_size: int, multiple: int) -> tuple[list[dict], int, int]:
    """A step's micro-batches in the shape a pipelined schedule runs: each ``micro_batch_size`` rows
    (stages exchange activations of one fixed shape) and a multiple of ``multiple`` of them (the
    interleaved schedule). Instruction tuning's steps (and a partial validation step) need it: their last
    micro-batch may be shorter and their count varies. Added rows repeat a micro-batch's last row and
    added micro-batches the last micro-batch, with ``loss_mask`` (and ``num_samples``) zero, so the loss
    sum and every gradient are those of the real rows. Returns ``(micro-batches, rows added,
    micro-batches added)``."""
    out, rows_added = [], 0
    for mb in micro_batches:
        short = micro_batch_size - mb["labels"].shape[0]
        if short > 0:
            mb = {k: torch.cat([t, t[-1:].expand(short, *t.shape[1:])]) for k, t in mb.items()}  # [mbs, ...]
            mb["loss_mask"][-short:] = 0
            if "num_samples" in mb:
                mb["num_samples"][-short:] = 0
            rows_added += short
        out.append(mb)
    extra = -len(out) % multiple
    if extra:
        blank = {k: t.clone() for k, t in out[-1].items()}
        blank["loss_mask"].zero_()
        if "num_samples" in blank:
            blank["num_samples"].zero_()
        out += [blank] * extra
    return out, rows_added, extra


def get_forward_backward_func(pipeline: PipelineConfig, num_layers: int, num_micro_batches: int) -> ForwardBackwardFunc:
    """The schedule for this layout, after checking the micro-batch count."""
    check_num_micro_batches(pipeline, num_layers, num_micro_batches)
    if pipeline.pipeline_model_parallel_size == 1:
        return forward_backward_no_pipelining
    if pipeline.num_model_chunks(num_layers) > 1:
        return forward_backward_pipelining_with_interleaving
    return forward_backward_pipelining_without_interleaving


# ---- the steps every schedule is made of ---------------------------------------------------------------

def _loss_sum(per_token: torch.Tensor, mb: dict) -> torch.Tensor:
    return (per_token.float() * mb["loss_mask"]).sum()


class _Steps:
    """Forward and backward of one chunk on one micro-batch, recording the loss sums of the last stage
    (and, given a ``ComputeTimer``, each forward's and backward's time)."""

    def __init__(self, chunks: list, ddp, micro_batches: list[dict], scale, forward_only: bool,
                 timer: ComputeTimer | None):
        self.chunks, self.micro_batches, self.scale, self.forward_only = chunks, micro_batches, scale, forward_only
        self.ddp, self.timer = ddp, timer
        self.loss_sums: list[torch.Tensor] = []
        self.backwards_done = [0] * len(chunks)  # every schedule runs a chunk's backwards in micro-batch order

    def forward(self, c: int, index: int, input_tensor: torch.Tensor | None) -> torch.Tensor:
        """Chunk ``c``'s output (to send on), or on the last stage the scaled loss (to backpropagate)."""
        start = None if self.timer is None else self.timer.start()
        chunk = self.chunks[c]
        if input_tensor is not None and not self.forward_only:
            input_tensor.requires_grad_()
        mb = self.micro_batches[index]
        out = stage_forward(chunk, mb, input_tensor)
        if chunk.post_process:
            local = _loss_sum(out, mb)
            self.loss_sums.append(local.detach())
            out = local if self.forward_only else local * self.scale
        if start is not None:
            self.timer.stop("F", c, index, start)
        return out

    def backward(self, c: int, input_tensor, output_tensor, output_grad) -> torch.Tensor | None:
        """Backpropagate chunk ``c`` from its output (``output_grad`` from the next stage; ``None`` for the
        loss) and return the gradient of its input, to send back (``None`` on the first chunk). The chunk's
        last micro-batch runs under ``ddp.grad_sync()``: its gradients are final, their reduction may start."""
        start = None if self.timer is None else self.timer.start()
        index = self.backwards_done[c]
        self.backwards_done[c] += 1
        last = index == len(self.micro_batches) - 1
        with self.ddp.grad_sync() if last and self.ddp is not None else contextlib.nullcontext():
            torch.autograd.backward(output_tensor, grad_tensors=output_grad)
        if start is not None:
            self.timer.stop("B", c, index, start)
        return None if input_tensor is None else input_tensor.grad

    def total(self, parallel: ParallelState, device) -> torch.Tensor:
        total = torch.zeros((), dtype=torch.float32, device=device)
        for local in self.loss_sums:  # in micro-batch order, as the one-process loop adds them
            total += local
        if parallel.pp_size > 1:
            dist.all_reduce(total, group=parallel.pp_group)  # only the last stage has a non-zero sum
        return total


def _context(ddp, forward_only: bool):
    if forward_only:
        return torch.no_grad()
    return contextlib.nullcontext() if ddp is None else ddp.no_sync()


def _geometry(chunk, micro_batches: list[dict]):
    b, s = micro_batches[0]["input_ids"].shape
    param = next(chunk.parameters())
    return activation_shape(chunk, b, s), dict(dtype=param.dtype, device=param.device)


# ---- PP = 1 ---------------------------------------------------------------------------------------------

def forward_backward_no_pipelining(model, ddp, micro_batches: list[dict], parallel: ParallelState, scale,
                                   forward_only: bool = False, timer: ComputeTimer | None = None) -> torch.Tensor:
    (chunk,) = model_chunks(model)
    steps = _Steps([chunk], ddp, micro_batches, scale, forward_only, timer)
    with _context(ddp, forward_only):
        for i in range(len(micro_batches)):
            loss = steps.forward(0, i, None)
            if not forward_only:
                steps.backward(0, None, loss, None)
    return steps.total(parallel, next(chunk.parameters()).device)


# ---- 1F1B -------------------------------------------------------------------------------------------------

def forward_backward_pipelining_without_interleaving(model, ddp, micro_batches: list[dict], parallel: ParallelState,
                                                     scale, forward_only: bool = False,
                                                     timer: ComputeTimer | None = None) -> torch.Tensor:
    (chunk,) = model_chunks(model)
    steps = _Steps([chunk], ddp, micro_batches, scale, forward_only, timer)
    shape, like = _geometry(chunk, micro_batches)
    first, last = parallel.is_pipeline_first_stage, parallel.is_pipeline_last_stage
    m = len(micro_batches)
    warmup = min(parallel.pp_size - parallel.pp_rank - 1, m)
    remaining = m - warmup
    inputs, outputs = [], []

    def recv_forward():
        return None if first else p2p.recv_forward(parallel, shape, **like)

    def send_forward(output):
        if not last:
            p2p.send_forward(parallel, output)

    with _context(ddp, forward_only):
        for i in range(warmup):
            input_tensor = recv_forward()
            output = steps.forward(0, i, input_tensor)
            send_forward(output)
            if not forward_only:
                inputs.append(input_tensor)
                outputs.append(output)
        input_tensor = recv_forward() if remaining else None
        for i in range(remaining):
            final = i == remaining - 1
            output = steps.forward(0, warmup + i, input_tensor)
            if forward_only:
                send_forward(output)
                input_tensor = None if final else recv_forward()
                continue
            output_grad = None if last else p2p.send_forward_recv_backward(parallel, output, shape)
            inputs.append(input_tensor)
            outputs.append(output)
            input_grad = steps.backward(0, inputs.pop(0), outputs.pop(0), output_grad)
            if final:
                input_tensor = None
                if not first:
                    p2p.send_backward(parallel, input_grad)
            elif first:
                input_tensor = None
            else:
                input_tensor = p2p.send_backward_recv_forward(parallel, input_grad, shape)
        if not forward_only:
            for _ in range(warmup):
                output_grad = None if last else p2p.recv_backward(parallel, shape, **like)
                input_grad = steps.backward(0, inputs.pop(0), outputs.pop(0), output_grad)
                if not first:
                    p2p.send_backward(parallel, input_grad)
    return steps.total(parallel, like["device"])


# ---- interleaved 1F1B -------------------------------------------------------------------------------------

def forward_backward_pipelining_with_interleaving(model, ddp, micro_batches: list[dict], parallel: ParallelState,
                                                  scale, forward_only: bool = False,
                                                  timer: ComputeTimer | None = None) -> torch.Tensor:
    """Megatron-Core's interleaved schedule. Forward pass ``k`` (of ``m·V``) runs chunk
    ``(k mod P·V) // P``; backward pass ``k`` the chunks in reverse. Each chunk consumes the
    micro-batches in order, so chunk ``c``'s ``j``-th forward (and backward) is micro-batch ``j``."""
    chunks = model_chunks(model)
    v, p, rank = len(chunks), parallel.pp_size, parallel.pp_rank
    m = len(micro_batches)
    if m % p:
        raise ValueError(f"the interleaved schedule needs a multiple of --pipeline-model-parallel-size {p} "
                         f"micro-batches, got {m}")
    steps = _Steps(chunks, ddp, micro_batches, scale, forward_only, timer)
    shape, like = _geometry(chunks[0], micro_batches)
    total = m * v
    first_rank, last_rank = parallel.is_pipeline_first_stage, parallel.is_pipeline_last_stage
    all_warmup = forward_only or m == p
    warmup = total if all_warmup else min((p - rank - 1) * 2 + (v - 1) * p, total)
    remaining = total - warmup
    inputs = [[] for _ in range(v)]
    outputs = [[] for _ in range(v)]
    output_grads = [[] for _ in range(v)]
    forwards_done = [0] * v

    def chunk_id(k: int, forward: bool) -> int:
        c = (k % (p * v)) // p
        return c if forward else v - c - 1

    def exchange(send_next=None, send_prev=None, recv_prev=False, recv_next=False):
        return p2p.communicate(parallel, send_next=None if send_next is None else send_next.detach(),
                               send_prev=send_prev, recv_prev=shape if recv_prev else None,
                               recv_next=shape if recv_next else None, **like)

    def forward_step(k: int):
        c = chunk_id(k, forward=True)
        if chunks[c].pre_process and len(inputs[c]) == len(outputs[c]):
            inputs[c].append(None)
        output = steps.forward(c, forwards_done[c], inputs[c][-1])
        forwards_done[c] += 1
        outputs[c].append(output)
        if forward_only:  # nothing to keep for a backward
            inputs[c].pop()
            outputs[c].pop()
        return None if chunks[c].post_process else output  # the loss goes nowhere

    def backward_step(k: int):
        c = chunk_id(k, forward=False)
        if chunks[c].post_process and not output_grads[c]:
            output_grads[c].append(None)
        return steps.backward(c, inputs[c].pop(0), outputs[c].pop(0), output_grads[c].pop(0))

    with _context(ddp, forward_only):
        inputs[0].append(None if first_rank else exchange(recv_prev=True)[0])
        for k in range(warmup):
            output = forward_step(k)
            recv_prev = not (first_rank and chunk_id(k + 1, forward=True) == 0) and k != total - 1
            if k == warmup - 1 and not all_warmup:
                input_tensor, output_grad = exchange(send_next=output, recv_prev=recv_prev, recv_next=not last_rank)
                output_grads[v - 1].append(output_grad)
            else:
                input_tensor, _ = exchange(send_next=output, recv_prev=recv_prev)
            inputs[chunk_id(k + 1, forward=True)].append(input_tensor)

        for k in range(remaining):
            forward_k, backward_k = k + warmup, k
            output = forward_step(forward_k)
            input_grad = backward_step(backward_k)  # None on the first chunk: nothing to send back
            recv_prev = True
            if first_rank:  # the first stage is P - 1 passes ahead of the last
                next_forward = chunk_id(forward_k - (p - 1), forward=True)
                recv_prev = next_forward != v - 1
                next_forward += 1
            else:
                next_forward = chunk_id(forward_k + 1, forward=True)
            recv_next = True
            if last_rank:  # the last stage is P - 1 passes ahead of the first
                next_backward = chunk_id(backward_k - (p - 1), forward=False)
                recv_next = next_backward != 0
                next_backward -= 1
            else:
                next_backward = chunk_id(backward_k + 1, forward=False)
            if k == remaining - 1:
                recv_prev = False  # the extra input was received before this loop
            input_tensor, output_grad = exchange(send_next=output, send_prev=input_grad, recv_prev=recv_prev,
                                                 recv_next=recv_next)
            if recv_prev:
                inputs[next_forward].append(input_tensor)
            if recv_next:
                output_grads[next_backward].append(output_grad)

        if not forward_only:
            if all_warmup:
                output_grads[v - 1].append(None if last_rank else exchange(recv_next=True)[1])
            for k in range(remaining, total):
                input_grad = backward_step(k)
                next_backward = chunk_id(k + 1, forward=False)
                recv_next = not (last_rank and next_backward == v - 1) and k != total - 1
                _, output_grad = exchange(send_prev=input_grad, recv_next=recv_next)
                output_grads[next_backward].append(output_grad)
    return steps.total(parallel, like["device"])
