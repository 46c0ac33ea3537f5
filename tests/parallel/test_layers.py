"""Tensor-parallel layers on 2 gloo processes equal their single-process nn counterparts, forward and
backward, with and without sequence parallelism; init gives the same full weights at every TP size."""
import pytest
import torch

from megapmc.parallel import ParallelState, initialize_parallel
from megapmc.parallel.layers import ColumnParallelLinear, RowParallelLinear, VocabParallelEmbedding
from megapmc.testing.distributed import run_distributed

S, B, H = 4, 2, 6
TOL = dict(rtol=1e-10, atol=1e-10)


def _x(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def _pair(layer_cls, parallel, *args, **kwargs):
    """The same layer at TP = 1 (full weights) and on this rank, from the same seed."""
    full = layer_cls(*args, ParallelState.single(), dtype=torch.float64, **kwargs)
    local = layer_cls(*args, parallel, dtype=torch.float64, **kwargs)
    full.init_weights(42)
    local.init_weights(42)
    torch.testing.assert_close(local.weight, local.shard(full.weight), rtol=0, atol=0)
    return full, local


def _rows(t, rank, world):
    return t.chunk(world, dim=0)[rank]


def _check_layers(rank, world_size):
    parallel = initialize_parallel(world_size)
    for sp in (False, True):
        # Column-parallel with two stacked blocks (the fused gate/up layout): [s, b, h] -> [s, b, 2·10/tp]
        full, local = _pair(ColumnParallelLinear, parallel, H, [10, 10], sequence_parallel=sp)
        x = _x(S, B, H).requires_grad_(True)
        x_local = x.detach().chunk(world_size)[rank] if sp else x.detach()
        x_local.requires_grad_(True)
        y_full, y = full(x), local(x_local)
        torch.testing.assert_close(y, local.shard(y_full.transpose(0, -1)).transpose(0, -1), **TOL)
        g = _x(S, B, 20, seed=1)
        y_full.backward(g)
        y.backward(local.shard(g.transpose(0, -1)).transpose(0, -1))
        torch.testing.assert_close(local.weight.grad, local.shard(full.weight.grad), **TOL)
        expected_gx = _rows(x.grad, rank, world_size) if sp else x.grad
        torch.testing.assert_close(x_local.grad, expected_gx, **TOL)

        # Row-parallel: [s, b, 10/tp] -> [s, b, h] (or [s/tp, b, h] with SP)
        full, local = _pair(RowParallelLinear, parallel, 10, H, sequence_parallel=sp)
        x = _x(S, B, 10, seed=2).requires_grad_(True)
        x_local = x.detach()[..., 5 * rank:5 * rank + 5].requires_grad_(True)
        y_full, y = full(x), local(x_local)
        expected = _rows(y_full, rank, world_size) if sp else y_full
        torch.testing.assert_close(y, expected, **TOL)
        g = _x(S, B, H, seed=3)
        y_full.backward(g)
        y.backward(_rows(g, rank, world_size) if sp else g)
        torch.testing.assert_close(local.weight.grad, local.shard(full.weight.grad), **TOL)
        torch.testing.assert_close(x_local.grad, x.grad[..., 5 * rank:5 * rank + 5], **TOL)

        # Vocab-parallel embedding: ids [s, b] -> [s, b, h] (or [s/tp, b, h])
        full, local = _pair(VocabParallelEmbedding, parallel, 16, H, sequence_parallel=sp)
        ids = torch.randint(0, 16, (S, B), generator=torch.Generator().manual_seed(4))
        y_full, y = full(ids), local(ids)
        torch.testing.assert_close(y, _rows(y_full, rank, world_size) if sp else y_full, **TOL)
        g = _x(S, B, H, seed=5)
        y_full.backward(g)
        y.backward(_rows(g, rank, world_size) if sp else g)
        torch.testing.assert_close(local.weight.grad, local.shard(full.weight.grad), **TOL)

    # gather_output: a column-parallel layer can hand back the full output.
    full, local = _pair(ColumnParallelLinear, parallel, H, 8, gather_output=True)
    x = _x(S, B, H, seed=6)
    torch.testing.assert_close(local(x), full(x), **TOL)


@pytest.mark.slow
@pytest.mark.distributed
def test_parallel_layers_match_single_process():
    run_distributed(_check_layers, 2)


def test_init_is_independent_of_tp_size():
    """Each rank's slice of the TP = 1 weight is exactly what a TP = 4 rank draws."""
    full = ColumnParallelLinear(8, [16, 8, 8], ParallelState.single())
    full.init_weights(3)
    for rank in range(4):
        state = ParallelState.for_shapes(tp=4, tp_rank=rank)
        local = ColumnParallelLinear(8, [16, 8, 8], state)
        local.init_weights(3)
        assert local.weight.shape == (8, 8)
        torch.testing.assert_close(local.weight, local.shard(full.weight), rtol=0, atol=0)
        # [q_local; k_local; v_local]: rows 0-3 are q rows 4r..4r+3
        torch.testing.assert_close(local.weight[:4], full.weight[4 * rank:4 * rank + 4], rtol=0, atol=0)


def test_bad_split_names_the_size():
    with pytest.raises(ValueError, match="not divisible by the tensor-parallel size 4"):
        RowParallelLinear(10, 4, ParallelState.for_shapes(tp=4))
