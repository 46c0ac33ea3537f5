"""Tensor layouts: split/merge round trips with fused blocks and vocabulary padding, the checks on
replicated tensors, and the layers' declarations."""
import pytest
import torch
from torch import nn

from megapmc.parallel import ParallelState
from megapmc.parallel.layers import ColumnParallelLinear, RowParallelLinear, VocabParallelEmbedding
from megapmc.parallel.layout import TensorLayout, padded_size, param_layouts


def test_fused_blocks_are_split_one_by_one():
    layout = TensorLayout((8, 3), split_dim=0, blocks=(4, 2, 2))
    full = torch.arange(24.0).view(8, 3)
    shards = layout.split(full, 2)
    assert torch.equal(shards[1], torch.cat([full[2:4], full[5:6], full[7:8]]))
    assert layout.local_shape(2) == (4, 3)
    assert torch.equal(layout.merge(shards), full)
    assert [t.shape for t in layout.unfuse(full)] == [torch.Size(s) for s in layout.part_shapes()]


def test_vocabulary_padding_follows_the_tp_size():
    layout = TensorLayout((10, 2), split_dim=0, pad_to_multiple_of=4)
    full = torch.randn(10, 2)
    rows = [layout.padded_shape(tp)[0] for tp in (1, 2, 3)]
    assert rows == [12, 16, 12] == [padded_size(10, 4, tp) for tp in (1, 2, 3)]
    shards = layout.split(full, 2)
    assert [s.shape[0] for s in shards] == [8, 8] and shards[1][2:].abs().sum() == 0  # zero padding rows
    assert torch.equal(layout.merge(shards), full)  # padding dropped
    with pytest.raises(ValueError, match="more than the padded size 12"):
        layout.split(torch.zeros(13, 2), 1)


def test_columns_replicated_and_indivisible():
    cols = TensorLayout((2, 6), split_dim=1)
    full = torch.randn(2, 6)
    assert torch.equal(cols.split(full, 3)[2], full[:, 4:])
    with pytest.raises(ValueError, match="not divisible by the tensor-parallel size 4"):
        cols.local_shape(4)
    norm = TensorLayout((6,))
    w = torch.randn(6)
    assert torch.equal(norm.merge(norm.split(w, 2)), w)
    with pytest.raises(ValueError, match="norm.weight differs between TP rank 0 and TP rank 1"):
        norm.merge([w, w + 1], "norm.weight")


def test_layers_declare_their_layouts_and_undeclared_parameters_are_errors():
    state = ParallelState.for_shapes(tp=2)
    layers = nn.ModuleDict({"col": ColumnParallelLinear(4, [6, 2], state), "row": RowParallelLinear(6, 4, state),
                            "emb": VocabParallelEmbedding(10, 4, state, pad_to_multiple_of=4)})
    layouts = param_layouts(layers)
    assert layouts["col.weight"] == TensorLayout((8, 4), 0, (6, 2))
    assert {n: layouts[n].local_shape(2) for n in layouts} == {n: tuple(p.shape) for n, p in layers.named_parameters()}
    layers["bad"] = nn.Linear(2, 2)
    with pytest.raises(TypeError, match="bad.weight: Linear declares no weight_layout"):
        param_layouts(layers)
