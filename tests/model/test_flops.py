"""The FLOPs formula against hand-counted shapes and against PyTorch's own FLOP counter on the model."""
import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from megapmc.model import LlamaConfig
from megapmc.model.flops import (
    achieved_tflops,
    flops_per_token,
    matmul_parameters,
    mfu,
    peak_tflops,
    peak_tflops_for_device,
)


def test_13b_matmul_parameters_are_the_hf_count_minus_embedding_and_norms():
    config = LlamaConfig.from_name("llama-13b")
    hf_count = 13_015_864_320
    embedding, norms = 32000 * 5120, (2 * 40 + 1) * 5120
    assert matmul_parameters(config) == hf_count - embedding - norms


def test_13b_flops_per_token_by_hand():
    config = LlamaConfig.from_name("llama-13b")
    per_layer = 4 * 5120 * 5120 + 3 * 5120 * 13824
    n = 40 * per_layer + 32000 * 5120
    assert flops_per_token(config, 2048) == 6 * n + 12 * 40 * 5120 * 2048
    # Roughly 6 × 13B plus the attention term: about 83 GFLOP per token.
    assert 80e9 < flops_per_token(config, 2048) < 86e9


def test_gqa_only_shrinks_the_kv_projection():
    mha = LlamaConfig.from_name("llama2-70b", num_key_value_heads=64)
    gqa = LlamaConfig.from_name("llama2-70b")
    saved = 6 * 80 * 2 * 8192 * (64 - 8) * 128
    assert flops_per_token(mha, 4096) - flops_per_token(gqa, 4096) == saved


def test_formula_equals_pytorch_flop_counter_on_the_model():
    """Forward + backward of the real model: PyTorch counts exactly the formula's FLOPs (matmuls and
    attention; the math attention path computes the full s×s square, as the formula counts)."""
    from megapmc.model import TransformerOptions, build_model

    config = LlamaConfig.from_name("tiny")
    model = build_model(config, options=TransformerOptions(attention_backend="math", kernel_backend="torch"))
    b, s = 2, 16
    ids = torch.randint(0, config.vocab_size, (b, s))
    with FlopCounterMode(display=False) as counter:
        model(ids, labels=ids).sum().backward()
    assert counter.get_total_flops() == flops_per_token(config, s) * b * s


def test_mfu_and_named_peaks():
    config = LlamaConfig.from_name("llama-13b")
    f = flops_per_token(config, 2048)
    tokens_per_s = 0.5 * 312e12 / f * 32  # half of 32 A100s' peak
    assert achieved_tflops(tokens_per_s, config, 2048, num_devices=32) == pytest.approx(156.0)
    assert mfu(tokens_per_s, config, 2048, peak_tflops("a100"), num_devices=32) == pytest.approx(0.5)
    assert peak_tflops("h100-sxm") == peak_tflops("h200") == 989.0
    assert peak_tflops_for_device("NVIDIA A100-SXM4-80GB") == 312.0
    assert peak_tflops_for_device("NVIDIA H100 80GB HBM3") == 989.0
    assert peak_tflops_for_device("NVIDIA H100 PCIe") == 756.0
    assert peak_tflops_for_device("NVIDIA H200", bf16=False) == 67.0
    assert peak_tflops_for_device("Tesla T4") is None
    with pytest.raises(ValueError, match="unknown device"):
        peak_tflops("v100")
