"""Split/merge of megapmc's fused and vocab-parallel parameters, at TP 1, 2 and 4, through the layouts
the model's layers declare."""
import pytest
import torch

from megapmc.convert.name_map import all_params
from megapmc.convert.sharding import hf_to_shards, megapmc_shapes, model_layouts, reshard, shards_to_hf
from megapmc.model import LlamaConfig, build_model
from megapmc.parallel.state import ParallelState

CONFIG = LlamaConfig.from_name("tiny", num_attention_heads=8, num_key_value_heads=4, vocab_size=500)


def _random_hf_state(config):
    from megapmc.convert.sharding import full_shapes

    g = torch.Generator().manual_seed(0)
    return {n: torch.randn(shape, generator=g) for spec in all_params(config.num_layers)
            for n, shape in zip(spec.hf, full_shapes(spec, config))}


def test_qkv_layout_per_rank_is_q_k_v_of_local_heads():
    d = CONFIG.head_dim
    q = torch.arange(8 * d).float()[:, None]
    k = 1000 + torch.arange(4 * d).float()[:, None]
    v = 2000 + torch.arange(4 * d).float()[:, None]
    layout = model_layouts(CONFIG)["layers.0.self_attn.qkv_proj.weight"]
    shards = layout.split(layout.fuse([q, k, v]), 2)
    assert torch.equal(shards[1], torch.cat([q[4 * d:], k[2 * d:], v[2 * d:]]))
    merged = layout.unfuse(layout.merge(shards))
    assert all(torch.equal(a, b) for a, b in zip(merged, [q, k, v]))


def test_gate_up_layout_per_rank():
    gate, up = torch.randn(176, 3), torch.randn(176, 3)
    layout = model_layouts(CONFIG)["layers.0.mlp.gate_up_proj.weight"]
    shards = layout.split(layout.fuse([gate, up]), 2)
    assert torch.equal(shards[0], torch.cat([gate[:88], up[:88]]))


@pytest.mark.parametrize("tp", [1, 2, 4])
def test_split_merge_round_trip_and_shapes_match_the_model(tp):
    state = _random_hf_state(CONFIG)
    shards = hf_to_shards(state, CONFIG, tp)
    assert len(shards) == tp
    expected = {n: tuple(t.shape) for n, t in build_model(
        CONFIG, ParallelState.for_shapes(tp=tp), device="meta").state_dict().items()}
    assert {n: tuple(t.shape) for n, t in shards[0].items()} == expected == megapmc_shapes(CONFIG, tp)
    # padded vocabulary rows are zeros, on the last rank
    assert CONFIG.padded_vocab_size(tp) > 500 and shards[-1]["lm_head.weight"][-1].abs().sum() == 0
    back = shards_to_hf(shards, CONFIG)
    assert back.keys() == state.keys() and all(torch.equal(back[n], state[n]) for n in state)


def test_reshard_2_to_4_to_1_equals_direct():
    state = _random_hf_state(CONFIG)
    via = reshard(reshard(hf_to_shards(state, CONFIG, 2), CONFIG, 4), CONFIG, 1)
    direct = hf_to_shards(state, CONFIG, 1)
    assert all(torch.equal(via[0][n], direct[0][n]) for n in direct[0])


def test_replicated_mismatch_and_bad_tp_are_errors():
    shards = hf_to_shards(_random_hf_state(CONFIG), CONFIG, 2)
    shards[1]["norm.weight"] = shards[1]["norm.weight"] + 1
    with pytest.raises(ValueError, match="norm.weight differs between TP rank 0 and TP rank 1"):
        shards_to_hf(shards, CONFIG)
    with pytest.raises(ValueError, match="does not divide num_attention_heads"):
        hf_to_shards(_random_hf_state(CONFIG), CONFIG, 3)
    with pytest.raises(ValueError, match="more than the padded size"):
        model_layouts(CONFIG)["embed_tokens.weight"].split(torch.zeros(600, 2), 1)
