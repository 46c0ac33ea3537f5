"""Every CUDA kernel backend against the plain PyTorch reference (run when a GPU is lent)."""
import pytest
import torch

from megapmc.testing.kernel_check import Shapes, all_backends, compare
from megapmc.model import LlamaConfig, TransformerOptions, build_model

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]

TOLERANCE = {torch.float32: 2e-3, torch.bfloat16: 2e-2}  # fp32 allows TF32 matmuls inside kernels


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
@pytest.mark.parametrize("op,backend", all_backends())
def test_backend_matches_reference(op, backend, dtype):
    if backend == "flash" and dtype == torch.float32:
        pytest.skip("flash-attn has no fp32 kernels")
    for packed in ((False, True) if op == "attention" else (False,)):
        errors = compare(op, backend, "cuda", dtype, Shapes(), packed=packed)
        if "skipped" in errors:
            pytest.skip(errors["skipped"])
        assert errors["forward"] < TOLERANCE[dtype], (packed, errors)
        assert errors["backward"] < TOLERANCE[dtype], (packed, errors)


def test_model_with_auto_kernels_matches_reference_kernels():
    config = LlamaConfig.from_name("tiny", vocab_size=500)
    ids = torch.randint(0, 500, (2, 64), device="cuda")
    fast = build_model(config, options=TransformerOptions(), device="cuda", dtype=torch.bfloat16)
    ref = build_model(config, options=TransformerOptions(attention_backend="math", kernel_backend="torch"),
                      device="cuda", dtype=torch.float32)
    with torch.no_grad():
        loss_fast = fast(ids, labels=ids)
        loss_ref = ref(ids, labels=ids)
    torch.testing.assert_close(loss_fast, loss_ref, rtol=3e-2, atol=3e-2)


def test_model_on_transformer_engine_rmsnorm_keeps_names_and_matches_reference():
    pytest.importorskip("transformer_engine.pytorch", reason="transformer-engine is not installed")
    config = LlamaConfig.from_name("tiny", vocab_size=500)
    ids = torch.randint(0, 500, (2, 64), device="cuda")
    te_model = build_model(config, options=TransformerOptions(attention_backend="sdpa", kernel_backend="te"),
                           device="cuda", dtype=torch.bfloat16, seed=3)
    ref = build_model(config, options=TransformerOptions(attention_backend="sdpa", kernel_backend="torch"),
                      device="cuda", dtype=torch.bfloat16, seed=3)
    assert te_model.kernels.names["rms_norm"] == "te"
    assert list(te_model.state_dict()) == list(ref.state_dict())  # layers.{i}.input_layernorm.weight ...
    loss_te, loss_ref = te_model(ids, labels=ids).mean(), ref(ids, labels=ids).mean()
    loss_te.backward()
    loss_ref.backward()
    torch.testing.assert_close(loss_te, loss_ref, rtol=2e-2, atol=2e-2)
    grad_te = te_model.layers[0].input_layernorm.weight.grad
    grad_ref = ref.layers[0].input_layernorm.weight.grad
    assert grad_te is not None and (grad_te.float() - grad_ref.float()).norm() < 5e-2 * grad_ref.float().norm()
