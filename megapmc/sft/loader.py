"""The instruction-tuning loader: whole optimizer steps of a fixed number of samples, split by DP rank.

``SFTDataset`` plans each step's samples into a variable number of rows (a multiple of the data-parallel
size). ``SFTStepSampler`` gives rank ``r`` its contiguous share of every step's rows as micro-batches of
``micro_batch_size`` rows, the last one of a step possibly shorter (every rank runs the same number); ``SFTStepLoader`` hands the trainer one step at a time, as the list of
that rank's micro-batches, so the trainer runs as many micro-batches as the step needs. Resuming from
``consumed_samples`` starts at step ``consumed_samples / samples_per_step``.
"""
from __future__ import annotations

from typing import Iterator

import torch
from torch.utils.data import DataLoader

from megapmc.parallel.state import ParallelState
from megapmc.sft.dataset import SFTDataset


def start_step(dataset: SFTDataset, consumed_samples: int) -> int:
    """The step a run resumes at; refuses a count that does not fall on a step boundary."""
    per_step = dataset.samples_per_step
    if consumed_samples < 0 or consumed_samples % per_step:
        raise ValueError(f"consumed_samples {consumed_samples} is not a multiple of the {per_step} samples of a "
                         f"step (a checkpoint from another --global-batch-size?)")
    step = consumed_samples // per_step
    if step > dataset.num_steps:
        raise ValueError(f"consumed_samples {consumed_samples} is past the {dataset.num_steps} planned steps of "
                         f"the instruction data; the run is already complete")
    return step


class SFTStepSampler:
    """This rank's micro-batches (lists of row indices), step after step from ``first_step``."""

    def __init__(self, dataset: SFTDataset, first_step: int, micro_batch_size: int, data_parallel_rank: int,
                 data_parallel_size: int):
        if dataset.rows_multiple % data_parallel_size:
            raise ValueError(f"the dataset pads steps to multiples of {dataset.rows_multiple} rows, not of the "
                             f"data-parallel size {data_parallel_size}")
        self.dataset, self.first_step = dataset, first_step
        self.micro_batch_size, self.rank, self.size = micro_batch_size, data_parallel_rank, data_parallel_size

    def micro_batches_per_step(self) -> Iterator[int]:
        for step in range(self.first_step, self.dataset.num_steps):
            first, last = self.dataset.step_rows(step)
            yield -(-(last - first) // self.size // self.micro_batch_size)  # ceil: a shorter last one

    def __len__(self) -> int:
        return sum(self.micro_batches_per_step())

    def __iter__(self) -> Iterator[list[int]]:
        mbs = self.micro_batch_size
        for step in range(self.first_step, self.dataset.num_steps):
            first, last = self.dataset.step_rows(step)
            share = (last - first) // self.size
            begin = first + self.rank * share
            for start in range(begin, begin + share, mbs):
                yield list(range(start, min(start + mbs, begin + share)))


class SFTStepLoader:
    """Iterates whole steps: each item is this rank's list of micro-batches (dicts of ``[mbs, ...]``)."""

    def __init__(self, loader: DataLoader, sampler: SFTStepSampler):
        self.loader, self.sampler = loader, sampler

    def __iter__(self) -> Iterator[list[dict[str, torch.Tensor]]]:
        batches = iter(self.loader)
        for count in self.sampler.micro_batches_per_step():
            yield [next(batches) for _ in range(count)]


def build_sft_loader(dataset: SFTDataset | None, consumed_samples: int, micro_batch_size: int,
                     global_batch_size: int, parallel: ParallelState, num_workers: int = 0) -> SFTStepLoader | None:
    """The ``TrainData.loader_builder`` of instruction tuning (the trainer's loader signature)."""
    if dataset is None:
        return None
    if dataset.samples_per_step != global_batch_size:
        raise ValueError(f"the instruction dataset was planned for steps of {dataset.samples_per_step} samples, "
                         f"the run has --global-batch-size {global_batch_size}")
    sampler = SFTStepSampler(dataset, start_step(dataset, consumed_samples), micro_batch_size,
                             parallel.dp_rank, parallel.dp_size)
    loader = DataLoader(dataset, batch_sampler=sampler, num_workers=num_workers,
                        pin_memory=torch.cuda.is_available(), persistent_workers=num_workers > 0)
    return SFTStepLoader(loader, sampler)
