"""Kernel selection and the CPU backends against the references (the CUDA backends: test_kernels_gpu.py)."""
import logging
import math
import sys

import pytest
import torch

from megapmc.kernels import KernelConfig, Kernels, KernelUnavailableError, registry, select_kernels
from megapmc.kernels.attention import segment_causal_mask
from megapmc.kernels.rope import rope_reference
from megapmc.testing.kernel_check import Shapes, compare
from megapmc.model.rotary import RotaryEmbedding

SMALL = Shapes(batch=2, seq=32, heads=4, kv_heads=2, head_dim=16, hidden=64, ffn=96, vocab=300)


def test_auto_on_cpu_is_sdpa_and_the_references():
    kernels = select_kernels(KernelConfig(), "cpu")
    assert kernels.names == {"attention": "sdpa", "rms_norm": "torch", "swiglu": "torch", "rope": "torch",
                             "cross_entropy": "single_pass"}
    assert Kernels.reference().names["attention"] == "math"


@pytest.mark.parametrize("flag,config,message", [
    ("--attention-backend", KernelConfig(attention_backend="flash"), "flash needs a CUDA device"),
    ("--kernel-backend", KernelConfig(kernel_backend="liger"), "liger needs a CUDA device"),
])
def test_explicit_backend_that_cannot_run_is_an_error_naming_the_flag(flag, config, message):
    with pytest.raises(KernelUnavailableError, match=f"{flag} .*{message}.*{flag} auto") as raised:
        select_kernels(config, "cpu")
    assert "\n" not in str(raised.value)


def test_explicit_backend_not_installed_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "liger_kernel", None)  # import raises ImportError
    with pytest.raises(KernelUnavailableError, match="--kernel-backend liger: liger-kernel is not installed "
                                                     r"\(rms_norm\); pip install liger-kernel"):
        select_kernels(KernelConfig(attention_backend="sdpa", kernel_backend="liger"), "cuda")


def test_auto_missing_fused_kernels_is_one_notice(monkeypatch, caplog):
    for package in ("flash_attn", "liger_kernel", "apex", "transformer_engine"):
        monkeypatch.setitem(sys.modules, package, None)
    registry._notice.cache_clear()  # each distinct notice is logged once per process
    with caplog.at_level(logging.WARNING, logger="megapmc.kernels"):
        kernels = select_kernels(KernelConfig(kernel_backend="torch"), "cuda")
        select_kernels(KernelConfig(kernel_backend="torch"), "cuda")
    assert kernels.names["attention"] == "sdpa" and kernels.names["rms_norm"] == "torch"
    notices = [r.getMessage() for r in caplog.records]
    assert len(notices) == 1 and "\n" not in notices[0], "one line, logged once"
    assert "attention: flash-attn is not installed" in notices[0]


def test_a_backend_without_a_kernel_for_an_op_runs_its_reference(monkeypatch):
    import types
    apex = types.ModuleType("apex.normalization.fused_layer_norm")
    apex.fused_rms_norm_affine = lambda x, w, shape, eps: x
    monkeypatch.setitem(sys.modules, "apex", types.ModuleType("apex"))
    monkeypatch.setitem(sys.modules, "apex.normalization", types.ModuleType("apex.normalization"))
    monkeypatch.setitem(sys.modules, "apex.normalization.fused_layer_norm", apex)
    names = select_kernels(KernelConfig(attention_backend="sdpa", kernel_backend="apex"), "cuda").names
    assert names == {"attention": "sdpa", "rms_norm": "apex", "swiglu": "torch", "rope": "torch",
                     "cross_entropy": "torch"}


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


def _rms_norm_oracle(x, weight, eps):
    return weight * x / torch.sqrt((x * x).mean(-1, keepdim=True) + eps)


def _swiglu_oracle(gate_up):
    gate, up = gate_up.chunk(2, dim=-1)
    return gate / (1 + torch.exp(-gate)) * up  # silu(g) = g·sigmoid(g)


def _rope_oracle(q, k, cos, sin):
    """Pairs ``(x_i, x_{i+d/2})`` as complex numbers turned by ``pos·10000^(-2i/d)`` (the tables unused)."""
    s, d = q.shape[0], q.shape[-1]
    angles = torch.arange(s, dtype=q.dtype)[:, None, None, None] * 10000.0 ** (
        -torch.arange(0, d, 2, dtype=q.dtype) / d)  # [s, 1, 1, d/2]
    turn = torch.polar(torch.ones_like(angles), angles)

    def rotate(x):
        z = torch.complex(x[..., :d // 2], x[..., d // 2:]) * turn
        return torch.cat([z.real, z.imag], dim=-1)
    return rotate(q), rotate(k)


def _cross_entropy_oracle(logits, target):
    return torch.logsumexp(logits, dim=-1) - logits.gather(-1, target.unsqueeze(-1)).squeeze(-1)


ORACLES = {"rms_norm": _rms_norm_oracle, "swiglu": _swiglu_oracle, "rope": _rope_oracle,
           "cross_entropy": _cross_entropy_oracle}


@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-5), (torch.bfloat16, 2e-2)], ids=["fp32", "bf16"])
@pytest.mark.parametrize("op", list(ORACLES))
def test_references_match_an_independent_float64_formula(op, dtype, tol):
    """Every other backend is held to the reference, so the reference is held to the formula itself."""
    errors = compare(op, "torch", "cpu", dtype, SMALL, oracle=ORACLES[op])
    assert errors["forward"] < tol and errors["backward"] < tol, errors


def test_the_oracle_check_can_fail():
    wrong = lambda x, weight, eps: weight * x / torch.sqrt((x * x).mean(-1, keepdim=True) + 1.0)  # noqa: E731
    assert compare("rms_norm", "torch", "cpu", torch.float32, SMALL, oracle=wrong)["forward"] > 1e-2


@pytest.mark.parametrize("backend", ["math", "sdpa"])
def test_attention_decode_over_a_full_cache_equals_the_training_core(backend):
    """``decode`` takes keys/values as the inference cache holds them, ``[b, nkv, t, d]``, and a boolean mask."""
    impl = registry.load_backend("attention", backend, "cpu")[0]
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(7, 2, n, 16, generator=g) for n in (4, 2, 2))  # [s, b, n, d], GQA
    causal = segment_causal_mask(None, 7, "cpu").expand(2, 1, 7, 7)
    expected = impl(q, k, v, impl.prepare(None, 7, "cpu"))
    got = impl.decode(q, k.permute(1, 2, 0, 3), v.permute(1, 2, 0, 3), causal)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_attention_decode_backends_agree_on_a_padding_mask():
    g = torch.Generator().manual_seed(1)
    q = torch.randn(3, 2, 4, 16, generator=g)  # 3 new tokens over 5 cached + 3
    k, v = (torch.randn(2, 2, 8, 16, generator=g) for _ in range(2))
    mask = torch.rand(2, 1, 3, 8, generator=g) > 0.4
    mask[..., -1] = True  # every query sees at least one key
    math_out = registry.load_backend("attention", "math", "cpu")[0].decode(q, k, v, mask)
    sdpa_out = registry.load_backend("attention", "sdpa", "cpu")[0].decode(q, k, v, mask)
    torch.testing.assert_close(sdpa_out, math_out, rtol=1e-5, atol=1e-5)


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
