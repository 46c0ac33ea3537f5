"""The sampler and loader split by DP rank and micro-batch, and resume exactly from consumed_samples."""
import numpy as np
import pytest
import torch

from blend_helpers import make_sources
from megapmc.data.blended_dataset import build_pretraining_datasets
from megapmc.data.config import DataConfig
from megapmc.data.loader import build_pretraining_data_loader
from megapmc.data.sampler import PretrainingSampler
from megapmc.parallel.state import ParallelState


def test_ranks_take_consecutive_slices_of_each_step():
    batches = [list(PretrainingSampler(24, 0, 2, r, 3)) for r in range(3)]
    assert batches[0][:2] == [[0, 1], [6, 7]]
    assert batches[2][:2] == [[4, 5], [10, 11]]
    seen = sorted(i for rank in batches for mb in rank for i in mb)
    assert seen == list(range(24))


def test_resume_continues_where_it_stopped():
    full = list(PretrainingSampler(100, 0, 4, 1, 2))
    resumed = list(PretrainingSampler(100, 40, 4, 1, 2))
    assert resumed == full[5:]
    assert len(PretrainingSampler(100, 40, 4, 1, 2)) == 7  # 60 left, 8 per step, last 4 dropped


@pytest.mark.parametrize("kwargs, message", [
    (dict(total_samples=0, consumed_samples=0), "no samples"),
    (dict(total_samples=10, consumed_samples=3), "multiple"),
    (dict(total_samples=10, consumed_samples=12), "past the end"),
])
def test_sampler_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        PretrainingSampler(micro_batch_size=2, data_parallel_rank=0, data_parallel_size=1, **kwargs)


@pytest.fixture(scope="module")
def blend(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("sampler")
    prefixes = make_sources(tmp / "data")
    config = DataConfig(["15", prefixes[0], "4", prefixes[1], "1", prefixes[2]], split="1", micro_batch_size=2,
                        cache_dir=str(tmp / "cache"))
    return build_pretraining_datasets(config, 16, 20, None, 2, 3, ParallelState.single(), verbose=False)[0]


def rank_batches(dataset, consumed, dp_size, num_workers=0):
    """Each DP rank's micro-batches from a loader started at ``consumed``."""
    out = []
    for rank in range(dp_size):
        parallel = ParallelState(dp_rank=rank, dp_size=dp_size, rank=rank, world_size=dp_size)
        loader = build_pretraining_data_loader(dataset, consumed, 2, 20, parallel, num_workers)
        out.append([b["tokens"] for b in loader])
    return out


def test_resume_mid_epoch_yields_the_same_following_batches(blend):
    full = rank_batches(blend, 0, 2)
    steps_per_batch = 20 // (2 * 2)
    consumed = 3 * 20  # three global batches, mid-way through the first book epoch
    resumed = rank_batches(blend, consumed, 2)
    for rank in range(2):
        assert len(resumed[rank]) == len(full[rank]) - 3 * steps_per_batch
        for a, b in zip(resumed[rank], full[rank][3 * steps_per_batch:]):
            assert torch.equal(a, b)
    # The loader's micro-batches are the dataset's samples in sampler order.
    first = full[1][0]
    assert first.shape == (2, 17) and first.dtype == torch.int64
    np.testing.assert_array_equal(first.numpy(), blend.get_tokens([2, 3]))


@pytest.mark.slow
def test_worker_processes_give_the_same_batches(blend):
    single = rank_batches(blend, 20, 1, num_workers=0)[0]
    workers = rank_batches(blend, 20, 1, num_workers=2)[0]
    assert len(single) == len(workers)
    assert all(torch.equal(a, b) for a, b in zip(single, workers))


def test_loader_rejects_a_batch_that_does_not_split(blend):
    parallel = ParallelState(dp_rank=0, dp_size=3, rank=0, world_size=3)
    with pytest.raises(ValueError, match="not a multiple"):
        build_pretraining_data_loader(blend, 0, 2, 20, parallel, 0)
    assert build_pretraining_data_loader(None, 0, 2, 20, parallel, 0) is None
