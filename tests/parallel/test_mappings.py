"""Each collective in megapmc.parallel.mappings, forward and backward, on 2 gloo processes.

One spawn runs every check (process start-up dominates on the CPU); each test reports its own collective.
"""
import json
import traceback

import pytest
import torch
import torch.distributed as dist

from megapmc.parallel import mappings as M
from megapmc.testing.distributed import run_distributed

WORLD = 2


def _t(rank: int, *shape, salt: int = 0) -> torch.Tensor:
    """A tensor every rank can rebuild for any other rank."""
    g = torch.Generator().manual_seed(100 * salt + rank)
    return torch.randn(*shape, generator=g, dtype=torch.float64)


def _run(fn, x, grad_out):
    x = x.clone().requires_grad_(True)
    y = fn(x)
    y.backward(grad_out)
    return y.detach(), x.grad


def check_copy(rank, group):
    y, gx = _run(lambda x: M.copy_to_tensor_model_parallel_region(x, group), _t(0, 3, 4), _t(rank, 3, 4, salt=1))
    torch.testing.assert_close(y, _t(0, 3, 4))
    torch.testing.assert_close(gx, sum(_t(r, 3, 4, salt=1) for r in range(WORLD)))


def check_reduce(rank, group):
    y, gx = _run(lambda x: M.reduce_from_tensor_model_parallel_region(x, group), _t(rank, 3, 4), _t(0, 3, 4, salt=1))
    torch.testing.assert_close(y, sum(_t(r, 3, 4) for r in range(WORLD)))
    torch.testing.assert_close(gx, _t(0, 3, 4, salt=1))


def check_gather(rank, group):
    y, gx = _run(lambda x: M.gather_from_tensor_model_parallel_region(x, group), _t(rank, 3, 2), _t(rank, 3, 4, salt=1))
    torch.testing.assert_close(y, torch.cat([_t(r, 3, 2) for r in range(WORLD)], dim=-1))
    torch.testing.assert_close(gx, _t(rank, 3, 4, salt=1)[:, 2 * rank:2 * rank + 2])


def check_reduce_scatter_sequence(rank, group):
    y, gx = _run(lambda x: M.reduce_scatter_to_sequence_parallel_region(x, group), _t(rank, 4, 2, 3),
                 _t(rank, 2, 2, 3, salt=1))
    torch.testing.assert_close(y, sum(_t(r, 4, 2, 3) for r in range(WORLD))[2 * rank:2 * rank + 2])
    torch.testing.assert_close(gx, torch.cat([_t(r, 2, 2, 3, salt=1) for r in range(WORLD)]))


def check_async_collectives(rank, group):
    x = _t(rank, 4, 3)
    M.all_reduce_async(x, group).wait()
    torch.testing.assert_close(x, sum(_t(r, 4, 3) for r in range(WORLD)))
    out, handle = M.all_gather_first_dim_async(_t(rank, 2, 3), group)
    handle.wait()
    torch.testing.assert_close(out, torch.cat([_t(r, 2, 3) for r in range(WORLD)]))
    out, handle = M.reduce_scatter_first_dim_async(_t(rank, 4, 3), group)
    handle.wait()
    torch.testing.assert_close(out, sum(_t(r, 4, 3) for r in range(WORLD))[2 * rank:2 * rank + 2])


CHECKS = {name[len("check_"):]: fn for name, fn in dict(globals()).items() if name.startswith("check_")}


def _all_checks(rank, world_size, out_dir):
    group = dist.new_group(list(range(world_size)))
    results = {}
    for name, fn in CHECKS.items():
        try:
            fn(rank, group)
            results[name] = "ok"
        except Exception:  # recorded per collective; the test for it fails with this traceback
            results[name] = traceback.format_exc()
    (out_dir / f"rank{rank}.json").write_text(json.dumps(results))


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    out = tmp_path_factory.mktemp("mappings")
    run_distributed(_all_checks, WORLD, out)
    return [json.loads((out / f"rank{r}.json").read_text()) for r in range(WORLD)]


@pytest.mark.slow
@pytest.mark.distributed
@pytest.mark.parametrize("collective", list(CHECKS))
def test_collective(results, collective):
    for rank, per_rank in enumerate(results):
        assert per_rank[collective] == "ok", f"rank {rank}:\n{per_rank[collective]}"


def test_single_process_is_identity():
    for fn in (M.copy_to_tensor_model_parallel_region, M.reduce_from_tensor_model_parallel_region,
               M.gather_from_tensor_model_parallel_region, M.reduce_scatter_to_sequence_parallel_region):
        x = torch.randn(4, 3, requires_grad=True)
        y = fn(x, None)
        assert torch.equal(y, x)
        y.backward(torch.full_like(y, 2.0))
        assert torch.equal(x.grad, torch.full_like(x, 2.0))
