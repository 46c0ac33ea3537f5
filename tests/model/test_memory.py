"""The memory estimator: parameter counts on the meta device, static bytes, and activations held to the
bytes autograd really saves for backward."""
import pytest
import torch

from megapmc.model import LlamaConfig
from megapmc.model.llama import TransformerOptions, build_model
from megapmc.model.memory import GIB, activation_bytes, count_parameters, estimate_memory, layouts_for
from megapmc.model.recompute import RecomputeConfig
from megapmc.optim import OptimizerConfig

LLAMA_13B = LlamaConfig.from_name("llama-13b")
BF16_ZERO1 = OptimizerConfig(bf16=True, use_distributed_optimizer=True)


def test_13b_counts_on_the_meta_device():
    total, per_rank = count_parameters(LLAMA_13B, 8)
    assert total == 13_015_864_320
    h, layers = 5120, 40
    padded = 32768  # 32000 padded to a multiple of 128 × 8
    matrices = layers * (4 * h * h + 3 * h * 13824)
    assert per_rank == (2 * padded * h + matrices) // 8 + (2 * layers + 1) * h


def test_static_memory_bf16_distributed_optimizer():
    est = estimate_memory(LLAMA_13B, 8, 4, 1, 2048, TransformerOptions(recompute_granularity="selective"), BF16_ZERO1)
    p = est.params_per_rank
    assert (est.weights, est.gradients) == (2 * p, 4 * p)
    assert est.optimizer == -(-12 * p // 4)
    fp32 = estimate_memory(LLAMA_13B, 8, 4, 1, 2048, optimizer=OptimizerConfig())
    assert (fp32.weights, fp32.gradients, fp32.optimizer) == (4 * p, 4 * p, 8 * p)  # fp32: no extra master
    d = est.to_dict()
    assert d["params_total"] == 13_015_864_320 and d["total"] == est.total
    assert "TP 8 x DP 4" in str(est) and "sharded over DP=4" in str(est)


def _saved_bytes(model, ids):
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    saved = {}

    def pack(t):
        storage = t.untyped_storage()
        if storage.data_ptr() not in params:
            saved[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model(ids, labels=ids)
    return sum(saved.values())


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("granularity,backend", [(None, "math"), ("selective", "math"), (None, "sdpa")])
def test_activations_match_what_autograd_saves(dtype, granularity, backend):
    config = LlamaConfig.from_name("tiny", num_layers=3, hidden_size=128, ffn_hidden_size=352,
                                   num_attention_heads=8, num_key_value_heads=2)
    options = TransformerOptions(attention_backend=backend, kernel_backend="torch",
                                 recompute_granularity=granularity)
    model = build_model(config, options=options, dtype=dtype)
    b, s = 2, 96
    ids = torch.randint(0, config.vocab_size, (b, s))
    measured = _saved_bytes(model, ids)
    estimated = activation_bytes(config, 1, s, b, RecomputeConfig(granularity), False, backend == "math",
                                 dtype.itemsize)
    assert estimated == pytest.approx(measured, rel=0.03)


def test_recompute_and_sequence_parallel_order():
    def act(granularity, sp=False):
        options = TransformerOptions(recompute_granularity=granularity, sequence_parallel=sp)
        return estimate_memory(LLAMA_13B, 8, 4, 1, 2048, options, BF16_ZERO1).activations

    assert act("full") < act("selective") < act(None)
    assert act("selective", sp=True) < act("selective")
    math = estimate_memory(LLAMA_13B, 8, 4, 1, 2048, TransformerOptions(attention_backend="math"), BF16_ZERO1)
    assert math.activations > act(None) + 40 * 4 * 40 * 2048 * 2048 / 8 * 0.99  # the s×s probabilities


def test_paper_layouts_on_32_a100_80gb():
    options = TransformerOptions(recompute_granularity="selective", sequence_parallel=True)
    sharded = {e.tensor_model_parallel_size: e for e in layouts_for(LLAMA_13B, 32, 1, 2048, options, BF16_ZERO1)}
    assert sorted(sharded) == [1, 2, 4, 8]
    assert all(e.data_parallel_size * e.tensor_model_parallel_size == 32 for e in sharded.values())
    # TP=1 holds 13B bf16 weights + fp32 grads (78 GB) before any optimizer state: it cannot fit.
    assert not sharded[1].fits(80) and sharded[2].fits(80) and sharded[8].fits(80)
    plain = {e.tensor_model_parallel_size: e for e in layouts_for(
        LLAMA_13B, 32, 1, 2048, options, OptimizerConfig(bf16=True))}
    assert not plain[2].fits(80) and plain[8].fits(80)  # 18 bytes/param unsharded
    assert plain[4].total > sharded[4].total > 20 * GIB
