"""CUDA numerics of the backends (run when a GPU is lent): bf16 by default, fp32 parity with the CPU."""
import pytest
import torch

from megapmc.evaluation.backends import HFBackend, default_dtype
from megapmc.evaluation.fewshot import FewShotSampler
from megapmc.evaluation.scoring import score_loglik
from megapmc.evaluation.tasks import TASKS

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]


def test_hf_backend_on_cuda_matches_cpu(tiny_hf_dir, sample_dir):
    assert default_dtype(torch.device("cuda")) == torch.bfloat16
    task = TASKS["medqa"]
    items = task.load(sample_dir, "test").items
    runs = {}
    for device, dtype in (("cpu", torch.float32), ("cuda", torch.float32), ("cuda", None)):
        backend = HFBackend.from_pretrained(tiny_hf_dir, batch_size=4, device=torch.device(device), dtype=dtype,
                                            show_progress=False)
        runs[device, dtype] = score_loglik(backend, task, items, FewShotSampler([], 0))
    cpu, gpu32, gpu16 = runs["cpu", torch.float32], runs["cuda", torch.float32], runs["cuda", None]
    for a, b, c in zip(cpu, gpu32, gpu16):
        assert a.chosen == b.chosen
        assert a.loglikelihoods == pytest.approx(b.loglikelihoods, abs=1e-3)
        assert a.loglikelihoods == pytest.approx(c.loglikelihoods, abs=0.25)  # bf16 rounding, not a bug
