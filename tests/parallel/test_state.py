"""ParallelState: Megatron's rank order (TP fastest, then DP, then PP), the groups each rank gets, the
pipeline neighbours, and the shapes-only constructor."""
import pytest
import torch
import torch.distributed as dist

from megapmc.parallel.state import ParallelState, initialize_parallel
from megapmc.testing.distributed import run_distributed


def test_tp_or_pp_without_a_group_is_an_error():
    with pytest.raises(ValueError, match="tp_size=2 has no tp_group.*for_shapes"):
        ParallelState(tp_size=2, world_size=2)
    with pytest.raises(ValueError, match="pp_size=4 has no pp_group"):
        ParallelState(pp_size=4, world_size=4)
    with pytest.raises(ValueError, match="tp_rank 2 is not in"):
        ParallelState.for_shapes(tp=2, tp_rank=2)


def test_for_shapes_places_the_rank_in_the_grid():
    s = ParallelState.for_shapes(tp=8, pp=4, dp=2, tp_rank=3, dp_rank=1, pp_rank=2)
    assert (s.rank, s.world_size) == ((2 * 2 + 1) * 8 + 3, 64)
    assert s.shapes_only and not s.is_pipeline_first_stage and not s.is_pipeline_last_stage
    assert s.pipeline_next_rank == s.rank + 16 and s.pipeline_prev_rank == s.rank - 16
    last = ParallelState.for_shapes(tp=2, pp=3, pp_rank=2)
    assert last.is_pipeline_last_stage and last.pipeline_next_rank == 0  # wraps to the first stage


def _check_groups(rank, world_size):
    s = initialize_parallel(tensor_model_parallel_size=2, pipeline_model_parallel_size=2)  # DP = 2
    assert (s.tp_rank, s.dp_rank, s.pp_rank) == (rank % 2, rank // 2 % 2, rank // 4)
    for group, expected in ((s.tp_group, [rank - rank % 2, rank - rank % 2 + 1]),
                            (s.dp_group, sorted({rank % 2 + 4 * s.pp_rank, rank % 2 + 4 * s.pp_rank + 2})),
                            (s.pp_group, [rank % 4, rank % 4 + 4])):
        members = [torch.zeros(1, dtype=torch.int64) for _ in range(dist.get_world_size(group))]
        dist.all_gather(members, torch.tensor([rank]), group=group)
        assert [int(m) for m in members] == expected
    assert s.pipeline_next_rank == (rank + 4) % 8 == s.pipeline_prev_rank


@pytest.mark.distributed
def test_tp2_dp2_pp2_groups():
    run_distributed(_check_groups, 8)
