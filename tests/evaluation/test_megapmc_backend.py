"""The megapmc backend at TP=2 (gloo) gives the same choices as the HF backend on the exported model, and
its KV-cached greedy generation the tokens of the uncached reference and of transformers' ``generate``."""
import json

import pytest
import torch

from megapmc.checkpoint.model_io import save_model_shards
from megapmc.convert import export_to_hf, reshard
from megapmc.evaluation.backends import CausalLMBackend, HFBackend, MegapmcBackend, load_tokenizer
from megapmc.evaluation.fewshot import FewShotSampler
from megapmc.evaluation.scoring import score_generate, score_loglik
from megapmc.evaluation.tasks import TASKS
from megapmc.model.config import LlamaConfig
from megapmc.model.llama import build_model
from megapmc.testing.distributed import run_distributed

pytestmark = [pytest.mark.slow, pytest.mark.distributed]
TASK_ITEMS = {"medqa": 3, "pubmedqa": 3}
NEW_TOKENS = 5


def _score(backend, sample_dir) -> dict:
    out = {}
    for name, n in TASK_ITEMS.items():
        task = TASKS[name]
        items = task.load(sample_dir, "test").items[:n]
        loglik = score_loglik(backend, task, items, FewShotSampler([], 0))
        gen = score_generate(backend, task, items[:2], FewShotSampler([], 0), NEW_TOKENS)
        out[name] = {"chosen": [r.chosen for r in loglik], "lls": [r.loglikelihoods for r in loglik],
                     "generation": [r.generation for r in gen]}
    return out


def _tp_worker(rank, world_size, ckpt, tokenizer, sample_dir, out_path):
    from megapmc.parallel.state import initialize_parallel

    parallel = initialize_parallel(world_size)
    backend = MegapmcBackend.from_checkpoint(ckpt, parallel, tokenizer=load_tokenizer(tokenizer), batch_size=2,
                                             device=torch.device("cpu"), show_progress=False)
    result = _score(backend, sample_dir)
    with open(f"{out_path}.{rank}", "w") as f:
        json.dump(result, f)


@pytest.fixture(scope="module")
def tp2_checkpoint(tmp_path_factory, spm_model):
    root = tmp_path_factory.mktemp("tp2")
    # A wide init spreads the logits so option scores are far apart compared with TP rounding.
    config = LlamaConfig.from_name("tiny", init_method_std=0.3, max_position_embeddings=1024)
    full = build_model(config, seed=11).state_dict()
    ckpt = root / "iter_0000001"
    save_model_shards(ckpt, reshard([full], config, 2),
                      {"model": config.to_dict(), "tokenizer": {"tokenizer_model": str(spm_model)}})
    hf_dir = export_to_hf(ckpt, root / "hf", tokenizer_model=spm_model, dtype="fp32")
    return ckpt, hf_dir


def test_tp2_matches_hf_export(tp2_checkpoint, sample_dir, spm_model, tmp_path):
    ckpt, hf_dir = tp2_checkpoint
    # The same tokenizer on both sides (the SentencePiece model), so the comparison is of the networks,
    # and the workers need not import transformers.
    hf = HFBackend.from_pretrained(hf_dir, batch_size=3, device=torch.device("cpu"),
                                   tokenizer=load_tokenizer(spm_model), show_progress=False)
    expected = _score(hf, sample_dir)
    out_path = tmp_path / "tp"
    run_distributed(_tp_worker, 2, str(ckpt), str(spm_model), str(sample_dir), str(out_path))
    ranks = [json.loads((tmp_path / f"tp.{r}").read_text()) for r in range(2)]
    assert ranks[0] == ranks[1]  # every TP rank computes the same thing
    for name in TASK_ITEMS:
        got, want = ranks[0][name], expected[name]
        assert got["chosen"] == want["chosen"]
        for a, b in zip(got["lls"], want["lls"]):
            assert a == pytest.approx(b, abs=1e-3)
        assert got["generation"] == want["generation"]  # greedy: megapmc's KV cache at TP=2 vs transformers'


def test_checkpoint_tokenizer_and_reshard_to_one(tp2_checkpoint, sample_dir):
    """A TP=2 checkpoint read in one process (resharded in memory), tokenizer from its config."""
    ckpt, hf_dir = tp2_checkpoint
    single = MegapmcBackend.from_checkpoint(ckpt, device=torch.device("cpu"), show_progress=False)
    hf = HFBackend.from_pretrained(hf_dir, batch_size=3, device=torch.device("cpu"),
                                   tokenizer=single.tokenizer, show_progress=False)
    task = TASKS["medmcqa"]
    items = task.load(sample_dir, "test").items[:4]
    a = score_loglik(single, task, items, FewShotSampler([], 0))
    b = score_loglik(hf, task, items, FewShotSampler([], 0))
    assert [r.chosen for r in a] == [r.chosen for r in b]


def test_cached_generation_matches_uncached_and_hf(tp2_checkpoint):
    """Prompts of different lengths in one batch (left padding) and a batch split unevenly."""
    ckpt, hf_dir = tp2_checkpoint
    megapmc = MegapmcBackend.from_checkpoint(ckpt, batch_size=3, device=torch.device("cpu"), show_progress=False)
    hf = HFBackend.from_pretrained(hf_dir, batch_size=3, device=torch.device("cpu"), tokenizer=megapmc.tokenizer,
                                   show_progress=False)
    g = torch.Generator().manual_seed(5)
    bos = megapmc.tokenizer.bos_id
    prompts = [[bos] + torch.randint(3, 512, (n,), generator=g).tolist() for n in (7, 2, 15, 11, 4)]
    cached = megapmc.generate(prompts, 12)
    assert sum(len(t) for t in cached) > 2 * len(prompts)  # the comparison covers many decode steps
    assert cached == CausalLMBackend.generate(megapmc, prompts, 12)  # the uncached reference
    assert cached == hf.generate(prompts, 12)
