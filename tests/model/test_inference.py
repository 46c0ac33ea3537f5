"""Incremental decoding: prefill + one-token steps over the KV cache give the full forward's logits
(fp32, 1e-5) at TP = 1 and TP = 2 with GQA; left padding is masked out; training-only options are refused."""
import pytest
import torch

from megapmc.kernels.attention import MathAttention
from megapmc.model import LlamaConfig, TransformerOptions, build_model
from megapmc.model.inference import InferenceCache, left_padded_positions
from megapmc.parallel import initialize_parallel
from megapmc.testing.distributed import run_distributed

TOL = dict(rtol=1e-5, atol=1e-5)
# GQA: 8 query heads over 4 KV heads; at TP = 2 each rank caches 2 KV heads for 4 query heads.
GQA = LlamaConfig.from_name("tiny", num_attention_heads=8, num_key_value_heads=4, vocab_size=500)


def _ids(b=2, s=12, seed=3):
    return torch.randint(0, GQA.vocab_size, (b, s), generator=torch.Generator().manual_seed(seed))


def _incremental(model, ids, prefill, cache_length=None):
    """Logits ``[b, s, V/tp]`` of ``ids`` computed as one prefill of ``prefill`` tokens, then one token a step."""
    b, s = ids.shape
    cache = InferenceCache.allocate(model, b, cache_length or s)
    parts = [model(ids[:, :prefill], inference_cache=cache)]
    parts += [model(ids[:, i:i + 1], inference_cache=cache) for i in range(prefill, s)]
    assert cache.length == s
    return torch.cat(parts, dim=1)


@pytest.mark.parametrize("prefill", [1, 5, 12])
def test_prefill_then_decode_equals_full_forward(prefill):
    model = build_model(GQA).eval()
    ids = _ids()
    with torch.no_grad():
        full = model(ids)
    got = _incremental(model, ids, prefill, cache_length=20)
    torch.testing.assert_close(got, full, **TOL)
    assert torch.isneginf(got[..., GQA.vocab_size:]).all()  # padded vocabulary stays masked


def test_decoding_runs_the_chosen_attention_backend(monkeypatch):
    calls = []
    original = MathAttention.decode
    monkeypatch.setattr(MathAttention, "decode", lambda self, *args: calls.append(1) or original(self, *args))
    model = build_model(GQA, options=TransformerOptions(attention_backend="math", kernel_backend="torch")).eval()
    model(_ids(2, 3), inference_cache=InferenceCache.allocate(model, 2, 4))
    assert len(calls) == GQA.num_layers


def test_math_attention_model_matches_too():
    """Decoding with the math backend's ``decode`` matches its full forward too."""
    model = build_model(GQA, options=TransformerOptions(attention_backend="math", kernel_backend="torch")).eval()
    ids = _ids(s=9)
    with torch.no_grad():
        full = model(ids)
    torch.testing.assert_close(_incremental(model, ids, 4), full, **TOL)


def test_left_padding_is_invisible():
    """A left-padded row (masked, positions counting real tokens) gives the logits of the row alone."""
    model = build_model(GQA).eval()
    short, long = _ids(1, 5, seed=1), _ids(1, 9, seed=2)
    pad = 4
    ids = torch.cat([torch.cat([torch.full((1, pad), 7), short], 1), long])  # [2, 9]
    real = torch.ones(2, 9, dtype=torch.bool)
    real[0, :pad] = False
    cache = InferenceCache.allocate(model, 2, 12)
    positions = left_padded_positions(real)
    assert positions[0].tolist() == [0] * 5 + [1, 2, 3, 4]
    prefill = model(ids, position_ids=positions, inference_cache=cache, padding_mask=real)
    step_ids = _ids(2, 1, seed=4)
    step = model(step_ids, position_ids=positions[:, -1:] + 1, inference_cache=cache)
    with torch.no_grad():
        alone_short = model(torch.cat([short, step_ids[:1]], 1))
        alone_long = model(torch.cat([long, step_ids[1:]], 1))
    torch.testing.assert_close(prefill[0, pad:], alone_short[0, :-1], **TOL)
    torch.testing.assert_close(step[0, 0], alone_short[0, -1], **TOL)
    torch.testing.assert_close(prefill[1], alone_long[0, :-1], **TOL)
    torch.testing.assert_close(step[1, 0], alone_long[0, -1], **TOL)
    assert prefill[0, :pad].isfinite().any(-1).all()  # padding queries attend themselves: no NaN


def test_cache_shapes_and_errors():
    model = build_model(GQA).eval()
    cache = InferenceCache.allocate(model, 3, 10)
    assert len(cache.key) == GQA.num_layers
    assert cache.key[0].shape == (3, 10, GQA.num_key_value_heads, GQA.head_dim)
    model(_ids(3, 8), inference_cache=cache)
    with pytest.raises(ValueError, match="8 filled, 3 more do not fit"):
        model(_ids(3, 3), inference_cache=cache)
    with pytest.raises(ValueError, match="allocated for 3"):
        model(_ids(2, 1), inference_cache=cache)
    with pytest.raises(ValueError, match="max_position_embeddings"):
        InferenceCache.allocate(model, 1, GQA.max_position_embeddings + 1)
    with pytest.raises(ValueError, match="neither segment_ids nor labels"):
        model(_ids(3, 1), labels=_ids(3, 1), inference_cache=cache)
    with pytest.raises(ValueError, match="padding_mask goes with an inference_cache"):
        model(_ids(3, 1), padding_mask=torch.ones(3, 1, dtype=torch.bool))


def test_training_options_refused():
    recompute = build_model(GQA, options=TransformerOptions(recompute_granularity="full"))
    with pytest.raises(ValueError, match="--recompute-granularity full is a training feature"):
        recompute(_ids(1, 2), inference_cache=InferenceCache.allocate(recompute, 1, 4))


def _check_tp_decode(rank, world_size, config, ids):
    torch.set_num_threads(1)
    reference = build_model(config).eval()
    with torch.no_grad():
        full = reference(ids)
    parallel = initialize_parallel(world_size)
    model = build_model(config, parallel).eval()
    cache = InferenceCache.allocate(model, ids.shape[0], ids.shape[1])
    assert cache.key[0].shape[2] == config.num_key_value_heads // world_size  # each rank caches its KV heads
    got = torch.cat([model(ids[:, :6], inference_cache=cache)]
                    + [model(ids[:, i:i + 1], inference_cache=cache) for i in range(6, ids.shape[1])], dim=1)
    local = full[..., model.vocab_start:model.vocab_start + got.shape[-1]]
    torch.testing.assert_close(got, local, **TOL)
    torch.testing.assert_close(model.gather_logits(got), full[..., :config.vocab_size], **TOL)

    sp = build_model(config, parallel, TransformerOptions(sequence_parallel=True))
    with pytest.raises(ValueError, match="--sequence-parallel is a training feature"):
        sp(ids[:, :2], inference_cache=InferenceCache.allocate(sp, ids.shape[0], 4))


@pytest.mark.slow
@pytest.mark.distributed
def test_tp2_decode_matches_tp1_full_forward():
    run_distributed(_check_tp_decode, 2, GQA, _ids(2, 10))
