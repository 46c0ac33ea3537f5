"""The transformer-engine RMSNorm backend with a stand-in ``transformer_engine`` package (the real one
needs CUDA; its numerics are checked in test_kernels_gpu.py beside the other backends)."""
import logging
import sys
import types

import pytest
import torch

from megapmc.kernels import KernelConfig, KernelUnavailableError, registry, select_kernels
from megapmc.model import LlamaConfig, TransformerOptions, build_model
from megapmc.model import llama as llama_module


class _StandInTERMSNorm(torch.nn.Module):
    """``transformer_engine.pytorch.RMSNorm``'s public interface: a module owning ``weight``."""

    weights_seen: list = []

    def __init__(self, hidden_size, eps=1e-5, device=None, params_dtype=None):
        super().__init__()
        self.eps = eps
        self.weight = torch.nn.Parameter(torch.full((hidden_size,), 7.0, device=device, dtype=params_dtype))

    def forward(self, x):
        type(self).weights_seen.append(self.weight)
        x32 = x.float()
        return self.weight * (x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)).to(x.dtype)


@pytest.fixture
def stand_in_te(monkeypatch):
    package, pytorch = types.ModuleType("transformer_engine"), types.ModuleType("transformer_engine.pytorch")
    pytorch.RMSNorm = _StandInTERMSNorm
    package.pytorch = pytorch
    monkeypatch.setitem(sys.modules, "transformer_engine", package)
    monkeypatch.setitem(sys.modules, "transformer_engine.pytorch", pytorch)
    _StandInTERMSNorm.weights_seen = []
    return pytorch


def test_auto_on_cuda_picks_te_rmsnorm_when_installed(stand_in_te):
    assert select_kernels(KernelConfig(), "cuda").names["rms_norm"] == "te"
    assert select_kernels(KernelConfig(kernel_backend="te"), "cuda").names["rms_norm"] == "te"


def test_without_te_auto_falls_through_with_a_notice(monkeypatch, caplog):
    monkeypatch.setitem(sys.modules, "transformer_engine", None)  # import raises ImportError
    registry._notice.cache_clear()
    with caplog.at_level(logging.WARNING, logger="megapmc.kernels"):
        names = select_kernels(KernelConfig(), "cuda").names
    assert names["rms_norm"] != "te"
    assert "rms_norm: transformer-engine is not installed" in caplog.records[0].getMessage()


def test_te_requested_on_cpu_is_an_error(stand_in_te):
    with pytest.raises(KernelUnavailableError, match="--kernel-backend te: te needs a CUDA device"):
        select_kernels(KernelConfig(kernel_backend="te"), "cpu")


def test_te_requested_but_not_installed_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "transformer_engine", None)
    with pytest.raises(KernelUnavailableError, match="pip install transformer-engine"):
        select_kernels(KernelConfig(kernel_backend="te"), "cuda")


def test_model_on_te_rmsnorm_keeps_parameter_names_and_matches_reference(stand_in_te, monkeypatch):
    config = LlamaConfig.from_name("tiny", vocab_size=300)
    options = TransformerOptions(attention_backend="math", kernel_backend="torch")
    reference = build_model(config, options=options, seed=3)
    te_kernels = select_kernels(KernelConfig(attention_backend="math", kernel_backend="te"), "cuda")
    assert te_kernels.names["rms_norm"] == "te" and te_kernels.names["swiglu"] == "torch"
    # The model runs here on the CPU with the kernels chosen for CUDA (the stand-in runs anywhere).
    monkeypatch.setattr(llama_module, "select_kernels", lambda config, device: te_kernels)
    model = build_model(config, options=options, seed=3)

    ref_sd, sd = reference.state_dict(), model.state_dict()
    assert list(sd) == list(ref_sd) and "layers.0.input_layernorm.weight" in sd
    assert not any(isinstance(m, _StandInTERMSNorm) for m in model.modules()), "TE's module is no submodule"
    for k in ref_sd:
        assert torch.equal(sd[k], ref_sd[k]), k

    ids = torch.randint(0, 300, (2, 16), generator=torch.Generator().manual_seed(0))
    loss, ref_loss = model(ids, labels=ids).mean(), reference(ids, labels=ids).mean()
    loss.backward()
    ref_loss.backward()
    torch.testing.assert_close(loss, ref_loss, rtol=1e-6, atol=1e-6)
    norm = model.layers[0].input_layernorm.weight
    assert any(w is norm for w in _StandInTERMSNorm.weights_seen), "TE's module ran with the model's weight"
    torch.testing.assert_close(norm.grad, reference.layers[0].input_layernorm.weight.grad, rtol=1e-5, atol=1e-6)
    # The module's own weight (7.0) was never used.
    with torch.no_grad():
        model.norm.weight.fill_(2.0)
    x = torch.randn(3, model.config.hidden_size)
    torch.testing.assert_close(model.norm(x), 2.0 * reference.norm.kernel(x, torch.ones_like(model.norm.weight),
                                                                          model.norm.eps))
