"""Where a pipeline stage's time goes: the compute regions a schedule ran, and the timeline the same
schedule gives with compute alone.

* ``ComputeTimer``: passed to a schedule (``timer=``), it records every forward and backward of a model
  chunk on one micro-batch as a ``Region`` (``time.perf_counter``, CLOCK_MONOTONIC on Linux: one clock
  for every process of a machine, so the regions of all stages lie on one time axis; and the thread's
  CPU time, which falls short of the wall time when other processes took the core). Without a timer
  the schedules record nothing.
* ``schedule_order``: the order in which a stage runs its regions under 1F1B or interleaved 1F1B
  (Megatron-Core's), the oracle the recorded order is tested against.
* ``exchange_groups``: that order cut where the schedule waits for its exchanges (the interleaved
  steady state receives the next forward's and the next backward's inputs together).
* ``simulate``: the timeline of those groups when each region takes a given time and a group starts as
  soon as its stage is free and its regions' inputs are there (the previous virtual stage's forward of
  the micro-batch, the next one's backward), optionally after a transfer ``latency``.
* ``start_delays``: per measured region, how long it started after it could have (the exchange,
  bookkeeping, and waiting for a core on a loaded machine): what ``simulate`` leaves out.
* ``bubble``: per stage, the share of the step (first region start to last region end, over all stages)
  the stage spent outside its regions: waiting, point-to-point exchange, schedule bookkeeping.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable


@dataclass(frozen=True)
class Region:
    """One forward (``"F"``) or backward (``"B"``) of model chunk ``chunk`` on micro-batch ``micro_batch``:
    wall-clock ``start`` and ``end``, and the CPU seconds this thread ran in between."""

    kind: str
    chunk: int
    micro_batch: int
    start: float
    end: float
    cpu: float = 0.0

    @property
    def duration(self) -> float:
        return self.end - self.start


class ComputeTimer:
    """Collects one stage's regions; ``start()``/``stop(...)`` bracket a forward or backward."""

    def __init__(self):
        self.regions: list[Region] = []

    @staticmethod
    def start() -> tuple[float, float]:
        return time.perf_counter(), time.thread_time()

    def stop(self, kind: str, chunk: int, micro_batch: int, start: tuple[float, float]) -> None:
        end, cpu = time.perf_counter(), time.thread_time()
        self.regions.append(Region(kind, chunk, micro_batch, start[0], end, cpu - start[1]))


Op = tuple[str, int, int]  # (kind, chunk, micro-batch)


def schedule_order(pipeline_size: int, pipeline_rank: int, num_micro_batches: int, num_model_chunks: int = 1,
                   forward_only: bool = False) -> list[Op]:
    """Stage ``pipeline_rank``'s forwards and backwards in the order its schedule runs them."""
    groups = exchange_groups(pipeline_size, pipeline_rank, num_micro_batches, num_model_chunks, forward_only)
    return [op for group in groups for op in group]


def exchange_groups(pipeline_size: int, pipeline_rank: int, num_micro_batches: int, num_model_chunks: int = 1,
                    forward_only: bool = False) -> list[tuple[Op, ...]]:
    """``schedule_order`` cut where the schedule waits for its exchanges: a group starts once the inputs
    of all its regions arrived. 1F1B receives just the next region's input after each region; the
    interleaved steady state runs a forward and a backward, then receives the inputs of the next forward
    and the next backward in one exchange, so that forward also waits for that backward's gradient."""
    p, r, m, v = pipeline_size, pipeline_rank, num_micro_batches, num_model_chunks
    if v == 1:
        forwards = [("F", 0, j) for j in range(m)]
        backwards = [("B", 0, j) for j in range(m)]
        warmup = m if forward_only else min(p - r - 1, m)
    else:
        # Pass k of m·V runs chunk (k mod P·V) // P on micro-batch (k // P·V)·P + k mod P; backwards
        # take the chunks in reverse.
        def op(kind, k):
            c = (k % (p * v)) // p
            return kind, c if kind == "F" else v - 1 - c, (k // (p * v)) * p + k % p
        forwards = [op("F", k) for k in range(m * v)]
        backwards = [op("B", k) for k in range(m * v)]
        warmup = m * v if forward_only or m == p else min((p - r - 1) * 2 + (v - 1) * p, m * v)
    if forward_only:
        return [(f,) for f in forwards]
    groups = [(f,) for f in forwards[:warmup]]
    for f, b in zip(forwards[warmup:], backwards):
        groups += [(f, b)] if v > 1 else [(f,), (b,)]
    return groups + [(b,) for b in backwards[len(forwards) - warmup:]]


def _input_of(kind: str, stage: int, micro_batch: int, last_virtual: int) -> tuple[str, int, int] | None:
    """The region whose result this one needs: the previous virtual stage's forward (none on the first),
    the next one's backward (on the last: its own forward), as ``(kind, virtual stage, micro-batch)``."""
    if kind == "F":
        return None if stage == 0 else ("F", stage - 1, micro_batch)
    return ("F", stage, micro_batch) if stage == last_virtual else ("B", stage + 1, micro_batch)


def simulate(groups: list[list[tuple[Op, ...]]], duration: Callable[[int, Op], float],
             latency: float = 0.0) -> list[list[Region]]:
    """The regions of every stage (``groups[rank]``, as ``exchange_groups`` gives them) when region ``op``
    of stage ``rank`` takes ``duration(rank, op)`` seconds and an activation or gradient takes ``latency``
    seconds to reach the neighbouring stage: a group starts when its stage is free and the inputs of all
    its regions are there. Time 0 is the first region's start."""
    p = len(groups)
    v = 1 + max(c for stage in groups for group in stage for _, c, _ in group)
    done: dict[tuple[str, int, int], float] = {}  # (kind, virtual stage, micro-batch) -> end
    free = [0.0] * p
    nxt = [0] * p
    out: list[list[Region]] = [[] for _ in range(p)]
    last_virtual = p * v - 1
    while any(nxt[r] < len(groups[r]) for r in range(p)):
        progressed = False
        for r in range(p):
            while nxt[r] < len(groups[r]):
                group = groups[r][nxt[r]]
                inside = {(kind, c * p + r, j) for kind, c, j in group}
                deps = {_input_of(kind, c * p + r, j, last_virtual) for kind, c, j in group} - inside - {None}
                if any(dep not in done for dep in deps):
                    break
                start = max([free[r]] + [done[dep] + (latency if dep[1] % p != r else 0.0) for dep in deps])
                for kind, c, j in group:
                    end = start + duration(r, (kind, c, j))
                    out[r].append(Region(kind, c, j, start, end))
                    done[(kind, c * p + r, j)] = start = free[r] = end
                nxt[r] += 1
                progressed = True
        if not progressed:
            raise ValueError("the stages' orders wait on each other: not a schedule")
    return out


def start_delays(regions: list[list[Region]], groups: list[list[tuple[Op, ...]]]) -> list[list[float]]:
    """Per region (of stages that ran ``groups``, as ``exchange_groups`` gives them), how long after it
    could start it did: after its stage's previous region ended and, first in its group, the inputs of the
    group's regions ended (``simulate``'s rule). What ``simulate`` leaves out: the exchange itself, the
    schedule's bookkeeping, and the wait for a core when other processes hold them all."""
    p = len(regions)
    last_virtual = p * (1 + max(x.chunk for stage in regions for x in stage)) - 1
    ends = {(x.kind, x.chunk * p + r, x.micro_batch): x.end for r, stage in enumerate(regions) for x in stage}
    out = []
    for r, (stage, stage_groups) in enumerate(zip(regions, groups)):
        delays, free, at = [], None, 0
        for group in stage_groups:
            inside = {(kind, c * p + r, j) for kind, c, j in group}
            deps = {_input_of(kind, c * p + r, j, last_virtual) for kind, c, j in group} - inside - {None}
            ready = [ends[dep] for dep in deps] + ([] if free is None else [free])
            for x in stage[at:at + len(group)]:
                delays.append(x.start - max(ready) if ready else 0.0)
                ready, free = [x.end], x.end
            at += len(group)
        out.append(delays)
    return out


def bubble(regions: list[list[Region]]) -> list[float]:
    """Per stage, ``1 - busy / step``: ``step`` runs from the first region's start to the last one's end
    over all stages, ``busy`` is the time the stage spent in its own regions."""
    start = min(x.start for stage in regions for x in stage)
    step = max(x.end for stage in regions for x in stage) - start
    return [1.0 - sum(x.duration for x in stage) / step for stage in regions]


def step_time(regions: list[list[Region]]) -> float:
    """First region's start to the last one's end, over all stages."""
    return max(x.end for stage in regions for x in stage) - min(x.start for stage in regions for x in stage)
