"""Vocab-parallel cross-entropy equals torch's cross-entropy on the full logits, forward and backward;
padded (-inf) columns never win; bf16 logits are computed in fp32."""
import pytest
import torch
import torch.nn.functional as F

from megapmc.parallel import initialize_parallel
from megapmc.parallel.cross_entropy import vocab_parallel_cross_entropy
from megapmc.testing.distributed import run_distributed

V, N = 24, 10  # 24 columns, the last 4 padding


def _logits_and_target(dtype=torch.float32):
    g = torch.Generator().manual_seed(0)
    logits = (torch.randn(2, N // 2, V, generator=g) * 4).to(dtype)
    logits[..., 20:] = float("-inf")
    target = torch.randint(0, 20, (2, N // 2), generator=g)
    return logits, target


def _reference(logits, target):
    x = logits.detach().float().requires_grad_(True)
    loss = F.cross_entropy(x.flatten(0, 1), target.flatten(), reduction="none").view(target.shape)
    loss.backward(torch.arange(N, dtype=torch.float32).view(target.shape))
    return loss.detach(), x.grad


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_single_process_matches_torch(dtype):
    logits, target = _logits_and_target(dtype)
    ref_loss, ref_grad = _reference(logits, target)
    x = logits.clone().requires_grad_(True)
    loss = vocab_parallel_cross_entropy(x, target)
    assert loss.dtype == torch.float32
    loss.backward(torch.arange(N, dtype=torch.float32).view(target.shape))
    torch.testing.assert_close(loss, ref_loss, rtol=1e-6, atol=1e-6)
    assert x.grad.dtype == dtype
    torch.testing.assert_close(x.grad.float(), ref_grad, rtol=1e-2 if dtype == torch.bfloat16 else 1e-6, atol=1e-6)
    assert torch.equal(x.detach(), logits), "the caller's logits were modified"


def _check(rank, world_size):
    parallel = initialize_parallel(world_size)
    logits, target = _logits_and_target()
    ref_loss, ref_grad = _reference(logits, target)
    width = V // world_size
    local = logits[..., rank * width:(rank + 1) * width].clone().requires_grad_(True)
    loss = vocab_parallel_cross_entropy(local, target, rank * width, parallel.tp_group)
    loss.backward(torch.arange(N, dtype=torch.float32).view(target.shape))
    torch.testing.assert_close(loss, ref_loss, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(local.grad, ref_grad[..., rank * width:(rank + 1) * width], rtol=1e-6, atol=1e-6)


@pytest.mark.slow
@pytest.mark.distributed
def test_vocab_parallel_matches_full():
    # Rank 1 holds columns 12-23, of which 20-23 are padding. (TP=4 runs in tests/model/test_llama_tp.py.)
    run_distributed(_check, 2)
