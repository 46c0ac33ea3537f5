"""Sequential pretraining sampler split by data-parallel rank and micro-batch, resumable from a sample count.

The dataset is already in training order (the blend and the shuffles are in its indices), so the sampler
walks it from ``consumed_samples``: each step takes the next ``micro_batch_size * dp_size`` samples and
rank ``r`` gets slice ``[r * mbs, (r + 1) * mbs)`` of them (Megatron's MegatronPretrainingSampler). After a
restart with the checkpoint's ``consumed_samples`` the same samples come in the same order.
"""
from __future__ import annotations

from typing import Iterator


class PretrainingSampler:
    """Yields this rank's micro-batches of dataset indices, as lists; a final step too short to give
    every rank a full micro-batch is dropped.

    Args:
        total_samples: length of the dataset.
        consumed_samples: samples all ranks together consumed before (a multiple of ``mbs * dp_size``).
        micro_batch_size: samples per micro-batch on one rank.
        data_parallel_rank / data_parallel_size: this rank's slice of each step.
    """

    def __init__(self, total_samples: int, consumed_samples: int, micro_batch_size: int, data_parallel_rank: int,
                 data_parallel_size: int):
        if total_samples <= 0:
            raise ValueError(f"the dataset holds no samples (total_samples = {total_samples})")
        if micro_batch_size < 1 or data_parallel_size < 1:
            raise ValueError(f"micro_batch_size ({micro_batch_size}) and data_parallel_size ({data_parallel_size}) "
                             f"must be >= 1")
        if not 0 <= data_parallel_rank < data_parallel_size:
            raise ValueError(f"data_parallel_rank {data_parallel_rank} outside [0, {data_parallel_size})")
        step = micro_batch_size * data_parallel_size
        if consumed_samples < 0 or consumed_samples % step:
            raise ValueError(f"consumed_samples {consumed_samples} must be a non-negative multiple of "
                             f"micro_batch_size x data_parallel_size = {step} (a checkpoint from another "
                             f"batch layout?)")
        if consumed_samples > total_samples:
            raise ValueError(f"consumed_samples {consumed_samples} is past the end of the dataset ({total_samples} "
                             f"samples); the run is already complete")
        self.total_samples, self.consumed_samples = total_samples, consumed_samples
        self.micro_batch_size, self.step = micro_batch_size, step
        self.data_parallel_rank = data_parallel_rank

    def __len__(self) -> int:
        return (self.total_samples - self.consumed_samples) // self.step

    def __iter__(self) -> Iterator[list[int]]:
        mbs, first = self.micro_batch_size, self.data_parallel_rank * self.micro_batch_size
        last = self.consumed_samples + len(self) * self.step
        for start in range(self.consumed_samples, last, self.step):
            yield list(range(start + first, start + first + mbs))
