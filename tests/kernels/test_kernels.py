"""Kernel selection and the CPU backends against the references (the CUDA backends: test_kernels_gpu.py)."""
import logging
import math

import pytest
import torch

from megapmc.kernels import KernelConfig, Kernels, registry, select_kernels
from megapmc.kernels.attention import segment_causal_mask
from megapmc.kernels.rope import rope_reference
from megapmc.kernels.verify import Shapes, compare
from megapmc.model.rotary import RotaryEmbedding

SMALL = Shapes(batch=2, seq=32, heads=4, kv_heads=2, head_dim=16, hidden=64, ffn=96, vocab=300)


def test_auto_on_cpu_is_sdpa_and_the_references():
    kernels = select_kernels(KernelConfig(), "cpu")
    assert kernels.names == {"attention": "sdpa", "rms_norm": "torch", "swiglu": "torch", "rope": "torch",
                             "cross_entropy": "single_pass"}
    assert Kernels.reference().names["attention"] == "math"


def test_unavailable_backend_is_a_one_line_notice_not_a_crash(caplog):
    registry._notice.cache_clear()  # each distinct notice is logged once per process
    with caplog.at_level(logging.WARNING, logger="megapmc.kernels"):
        kernels = select_kernels(KernelConfig(attention_backend="flash", kernel_backend="liger"), "cpu")
    assert kernels.names["attention"] == "sdpa" and kernels.names["rms_norm"] == "torch"
    notices = [r.getMessage() for r in caplog.records]
    assert len(notices) == 1 and "\n" not in notices[0]
    assert "flash needs a CUDA device" in notices[0] and "liger needs a CUDA device" in notices[0]
    with caplog.at_level(logging.WARNING, logger="megapmc.kernels"):
        select_kernels(KernelConfig(attention_backend="flash", kernel_backend="liger"), "cpu")
    assert len(caplog.records) == 1, "a repeated notice is logged once"


def test_bad_backend_name_names_the_flag():
    with pytest.raises(ValueError, match="--attention-backend"):
        KernelConfig(attention_backend="xformers")
    with pytest.raises(ValueError, match="--kernel-backend"):
        KernelConfig(kernel_backend="fast")


@pytest.mark.parametrize("packed", [False, True])
@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-5), (torch.bfloat16, 2e-2)])
def test_sdpa_matches_math_with_gqa(packed, dtype, tol):
    errors = compare("attention", "sdpa", "cpu", dtype, SMALL, packed=packed)
    assert errors["forward"] < tol and errors["backward"] < tol, errors


@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-6), (torch.bfloat16, 2e-2)])
def test_single_pass_cross_entropy_matches_reference(dtype, tol):
    errors = compare("cross_entropy", "single_pass", "cpu", dtype, SMALL)
    assert errors["forward"] < tol and errors["backward"] < tol, errors


@pytest.mark.parametrize("op", ["rms_norm", "swiglu", "rope", "cross_entropy"])
def test_bf16_references_stay_close_to_fp32(op):
    errors = compare(op, "torch", "cpu", torch.bfloat16, SMALL)
    assert errors["forward"] < 2e-2 and errors["backward"] < 2e-2, errors


def test_rope_is_rotation_of_complex_pairs_i_and_i_plus_half():
    """An independent oracle: pair (x_i, x_{i+d/2}) as a complex number rotated by angle pos·θ^(-2i/d)."""
    d, s = 8, 5
    x = torch.randn(s, 1, 1, d, dtype=torch.float64)
    cos, sin = RotaryEmbedding(d, theta=10000.0)(None, s, "cpu", torch.float64)
    rotated, _ = rope_reference(x, x, cos, sin)
    z = torch.complex(x[..., : d // 2], x[..., d // 2:])
    angles = torch.arange(s, dtype=torch.float64)[:, None, None, None] * 10000.0 ** (
        -torch.arange(0, d, 2, dtype=torch.float64) / d)
    z = z * torch.polar(torch.ones_like(angles), angles)
    torch.testing.assert_close(rotated, torch.cat([z.real, z.imag], dim=-1), rtol=1e-6, atol=1e-6)


def test_rotary_with_position_ids_gathers_rows():
    rotary = RotaryEmbedding(8)
    cos, _ = rotary(None, 10, "cpu", torch.float32)
    pos = torch.tensor([[3, 4, 0], [0, 1, 2]])
    cos_p, _ = rotary(pos, 3, "cpu", torch.float32)
    assert cos_p.shape == (3, 2, 1, 8)
    torch.testing.assert_close(cos_p[:, 0, 0], cos[[3, 4, 0], 0, 0])


def test_segment_causal_mask():
    mask = segment_causal_mask(torch.tensor([[0, 0, 1, 1]]), 4, "cpu")[0, 0]
    expected = torch.tensor([[1, 0, 0, 0], [1, 1, 0, 0], [0, 0, 1, 0], [0, 0, 1, 1]], dtype=torch.bool)
    assert torch.equal(mask, expected)
    assert math.isclose(float(segment_causal_mask(None, 4, "cpu").sum()), 10.0)
