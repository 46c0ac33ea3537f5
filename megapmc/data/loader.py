"""The pretraining DataLoader: the resumable sampler, batched fetches, worker processes, pinned memory."""
from __future__ import annotations

from typing import Optional

import torch
from torch.utils.data import DataLoader, Dataset

from megapmc.data.sampler import PretrainingSampler
from megapmc.parallel.state import ParallelState


def _worker_init(_worker_id: int) -> None:
    # Workers only copy memory-mapped tokens; intra-op threads would fight the training process for cores.
    torch.set_num_threads(1)


def build_pretraining_data_loader(dataset: Optional[Dataset], consumed_samples: int, micro_batch_size: int,
                                  global_batch_size: int, parallel: ParallelState,
                                  num_workers: int = 2) -> Optional[DataLoader]:
    """A loader yielding this DP rank's micro-batches ``{"tokens": int64 [mbs, seq_length + 1]}`` in order.

    ``consumed_samples`` is the global count from the checkpoint (0 for a fresh run). The datasets copy a
    whole micro-batch in one C++ call, which costs less than handing a batch between processes, so workers
    only help when reads stall on a cold or remote file system (benchmarks/bench_data.py measures both).
    Pinned memory only helps a CUDA copy, so it is used when CUDA is present.
    """
    if dataset is None:
        return None
    step = micro_batch_size * parallel.dp_size
    if global_batch_size % step:
        raise ValueError(f"--global-batch-size {global_batch_size} is not a multiple of --micro-batch-size "
                         f"{micro_batch_size} x data-parallel size {parallel.dp_size}")
    blend_mbs = getattr(dataset, "micro_batch_size", None)
    if blend_mbs is not None and blend_mbs != micro_batch_size and parallel.rank == 0:
        print(f"note: the blend was laid out for micro-batches of {blend_mbs}, the loader uses {micro_batch_size}: "
              f"global batches stay exact, micro-batches are not balanced (set DataConfig.micro_batch_size)")
    sampler = PretrainingSampler(len(dataset), consumed_samples, micro_batch_size, parallel.dp_rank, parallel.dp_size)
    return DataLoader(
        dataset,
        batch_sampler=sampler,
        num_workers=num_workers,
        pin_memory=torch.cuda.is_available(),
        persistent_workers=num_workers > 0,
        prefetch_factor=4 if num_workers > 0 else None,
        worker_init_fn=_worker_init if num_workers > 0 else None,
    )
