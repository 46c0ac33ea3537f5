"""The step sampler: each rank gets the same number of micro-batches of a step, the whole step is covered."""
import pytest

from megapmc.sft.loader import SFTStepSampler, start_step


class _Plan:
    """The part of SFTDataset the sampler reads: steps of 6, 4 and 10 rows (multiples of DP=2)."""

    rows_multiple, samples_per_step = 2, 8
    _ptr = [0, 6, 10, 20]
    num_steps = 3

    def step_rows(self, step):
        return self._ptr[step], self._ptr[step + 1]


def test_ranks_split_every_step_into_micro_batches_of_up_to_mbs_rows():
    per_rank = [list(SFTStepSampler(_Plan(), 0, 2, rank, 2)) for rank in range(2)]
    assert per_rank[0] == [[0, 1], [2], [6, 7], [10, 11], [12, 13], [14]]
    assert per_rank[1] == [[3, 4], [5], [8, 9], [15, 16], [17, 18], [19]]
    assert list(SFTStepSampler(_Plan(), 0, 2, 0, 2).micro_batches_per_step()) == [2, 1, 3]
    assert list(SFTStepSampler(_Plan(), 2, 2, 1, 2)) == [[15, 16], [17, 18], [19]]  # resumed at step 2


def test_resume_counts_must_fall_on_a_step():
    assert start_step(_Plan(), 16) == 2
    with pytest.raises(ValueError, match="not a multiple of the 8 samples"):
        start_step(_Plan(), 12)
    with pytest.raises(ValueError, match="already complete"):
        start_step(_Plan(), 32)
