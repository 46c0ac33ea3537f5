"""The schedules' timeline: the simulated 1F1B and interleaved timelines give the bubble formula for equal
stages (and more for unequal ones), and a real gloo run records its forwards and backwards in exactly the
order ``schedule_order`` says, on one clock for all stages."""
import json

import pytest
import torch

from megapmc.model.config import LlamaConfig
from megapmc.parallel.state import initialize_parallel
from megapmc.pipeline_parallel.config import PipelineConfig
from megapmc.pipeline_parallel.schedules import bubble_fraction, get_forward_backward_func
from megapmc.pipeline_parallel.stage import build_pipeline_model
from megapmc.pipeline_parallel.timeline import (
    ComputeTimer,
    Region,
    bubble,
    exchange_groups,
    schedule_order,
    simulate,
    start_delays,
    step_time,
)
from megapmc.testing.distributed import run_distributed


@pytest.mark.parametrize("p,v,m", [(2, 1, 4), (4, 1, 8), (4, 1, 3), (2, 2, 4), (4, 2, 8), (4, 3, 16), (3, 2, 3)])
@pytest.mark.parametrize("backward_cost", [1.0, 2.0])
def test_equal_stages_give_the_theory(p, v, m, backward_cost):
    groups = [exchange_groups(p, r, m, v) for r in range(p)]
    regions = simulate(groups, lambda rank, op: (1.0 if op[0] == "F" else backward_cost) / v)
    assert bubble(regions) == pytest.approx([bubble_fraction(p, m, v)] * p)
    assert step_time(regions) == pytest.approx((m + (p - 1) / v) * (1 + backward_cost))


def test_interleaved_steady_state_receives_two_inputs_at_once():
    assert exchange_groups(4, 1, 8)[2:4] == [(("F", 0, 2),), (("B", 0, 0),)]  # 1F1B: one input at a time
    groups = exchange_groups(2, 0, 4, 2)
    assert groups[:3] == [(("F", 0, 0),), (("F", 0, 1),), (("F", 1, 0),)]
    assert groups[4] == (("F", 0, 2), ("B", 1, 0))  # rank 0 of 2, V = 2: four warm-up forwards


def test_orders_hold_every_pass_once():
    order = schedule_order(2, 0, 4, 2)
    assert sorted(order) == sorted((k, c, j) for k in "FB" for c in range(2) for j in range(4))
    # Megatron's interleaving on 2 stages: two micro-batches through chunk 0, then through chunk 1.
    assert order[:4] == [("F", 0, 0), ("F", 0, 1), ("F", 1, 0), ("F", 1, 1)]
    # 1F1B on stage 1 of 4: two warm-up forwards, then one forward and one backward.
    assert schedule_order(4, 1, 8)[:4] == [("F", 0, 0), ("F", 0, 1), ("F", 0, 2), ("B", 0, 0)]
    assert schedule_order(2, 1, 4, forward_only=True) == [("F", 0, j) for j in range(4)]


def test_a_slow_stage_stretches_the_others_bubble():
    p, m = 2, 8
    groups = [exchange_groups(p, r, m) for r in range(p)]
    regions = simulate(groups, lambda rank, op: (1.0 if op[0] == "F" else 2.0) * (1.5 if rank == 1 else 1.0))
    fast, slow = bubble(regions)
    assert fast > bubble_fraction(p, m) > slow  # stage 0 waits for the slow one every step
    assert step_time(simulate(groups, lambda *_: 1.0, latency=0.5)) > step_time(simulate(groups, lambda *_: 1.0))


def test_start_delays_find_the_latency_the_simulation_was_given():
    groups = [exchange_groups(2, r, 4, 2) for r in range(2)]
    assert all(d == 0 for stage in start_delays(simulate(groups, lambda *_: 1.0), groups) for d in stage)
    delays = [d for stage in start_delays(simulate(groups, lambda *_: 1.0, latency=0.25), groups) for d in stage]
    assert all(0 <= d <= 0.25 + 1e-12 for d in delays) and max(delays) == pytest.approx(0.25)


def test_orders_that_wait_on_each_other_are_refused():
    with pytest.raises(ValueError, match="wait on each other"):
        simulate([[(("B", 0, 0),), (("F", 0, 0),)], [(("F", 0, 0),), (("B", 0, 0),)]], lambda *_: 1.0)


def _record(rank, world_size, m, out_dir):
    parallel = initialize_parallel(1, world_size)
    for v in (1, 2):
        _record_schedule(rank, world_size, parallel, v, m, out_dir)


def _record_schedule(rank, world_size, parallel, v, m, out_dir):
    config = LlamaConfig.from_name("tiny", num_layers=4, vocab_size=64)
    pipeline = PipelineConfig(world_size, num_layers_per_virtual_pipeline_stage=None if v == 1 else 4 // (2 * v))
    model = build_pipeline_model(config, parallel, None, pipeline, seed=0)
    g = torch.Generator().manual_seed(0)
    batches = [{"input_ids": torch.randint(0, 64, (1, 8), generator=g), "labels": torch.randint(0, 64, (1, 8), generator=g),
                "loss_mask": torch.ones(1, 8)} for _ in range(m)]
    func = get_forward_backward_func(pipeline, config.num_layers, m)
    untimed = func(model, None, batches, parallel, 1.0 / m)
    timer = ComputeTimer()
    timed = func(model, None, batches, parallel, 1.0 / m, timer=timer)
    assert torch.equal(untimed, timed)
    with open(f"{out_dir}/v{v}_stage{rank}.json", "w") as f:
        json.dump([(x.kind, x.chunk, x.micro_batch, x.start, x.end) for x in timer.regions], f)


@pytest.mark.distributed
def test_recorded_regions_follow_the_schedule(tmp_path):
    """1F1B and interleaved (V = 2) on two stages, four micro-batches; timing changes no result."""
    m = 4
    run_distributed(_record, 2, m, str(tmp_path))
    for v in (1, 2):
        stages = [[Region(*x) for x in json.loads((tmp_path / f"v{v}_stage{r}.json").read_text())] for r in range(2)]
        for rank, regions in enumerate(stages):
            assert [(x.kind, x.chunk, x.micro_batch) for x in regions] == schedule_order(2, rank, m, v)
            assert all(a.end <= b.start for a, b in zip(regions, regions[1:]))
        # One clock: stage 1's first forward (virtual stage 1) starts after stage 0's first one ended.
        assert stages[1][0].start >= stages[0][0].end
        assert all(0 <= b < 1 for b in bubble(stages))
