"""Log-likelihood mode against an independent computation made directly with transformers."""
import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from megapmc.evaluation.backends import HFBackend
from megapmc.evaluation.fewshot import FewShotSampler
from megapmc.evaluation.scoring import encode_pair, score_loglik
from megapmc.evaluation.tasks import TASKS

pytestmark = pytest.mark.slow


def _direct_logprob(model, tok, context: str, continuation: str) -> float:
    """The harness's recipe written out by hand, one sequence at a time, no padding."""
    ctx = tok(context, add_special_tokens=False)["input_ids"]
    whole = tok(context + continuation, add_special_tokens=False)["input_ids"]
    ids = torch.tensor([[tok.bos_token_id] + whole])
    with torch.no_grad():
        logp = torch.log_softmax(model(ids).logits[0].double(), -1)
    n_ctx = 1 + len(ctx)
    return sum(float(logp[pos - 1, ids[0, pos]]) for pos in range(n_ctx, ids.shape[1]))


@pytest.fixture(scope="module")
def backend(tiny_hf_dir):
    return HFBackend.from_pretrained(tiny_hf_dir, batch_size=3, device=torch.device("cpu"), show_progress=False)


@pytest.fixture(scope="module")
def direct(tiny_hf_dir):
    """The model and tokenizer loaded straight from transformers, apart from the backend's."""
    model = AutoModelForCausalLM.from_pretrained(tiny_hf_dir, dtype=torch.float32).eval()
    return model, AutoTokenizer.from_pretrained(tiny_hf_dir)


@pytest.mark.parametrize("task_name", ["pubmedqa", "medmcqa", "medqa"])
def test_loglik_choices_match_direct_transformers(task_name, backend, direct, sample_dir):
    task = TASKS[task_name]
    items = task.load(sample_dir, "test").items
    results = score_loglik(backend, task, items, FewShotSampler([], 0))
    model, tok = direct
    for item, res in zip(items, results):
        prompt = task.harness_prompt(item)
        choices = task.harness_choices(item)
        expected = [_direct_logprob(model, tok, prompt, " " + c) for c in choices]
        assert res.loglikelihoods == pytest.approx(expected, abs=1e-4)
        best = max(range(len(choices)), key=lambda i: expected[i])
        best_norm = max(range(len(choices)), key=lambda i: expected[i] / len(choices[i]))
        assert res.chosen == choices[best] and res.chosen_norm == choices[best_norm]
        assert res.correct == (best == item.gold) and res.gold == choices[item.gold]


def test_batching_does_not_change_scores(tiny_hf_dir, sample_dir):
    task = TASKS["medqa"]
    items = task.load(sample_dir, "test").items
    one = HFBackend.from_pretrained(tiny_hf_dir, batch_size=1, device=torch.device("cpu"), show_progress=False)
    many = HFBackend.from_pretrained(tiny_hf_dir, batch_size=16, device=torch.device("cpu"), show_progress=False)
    a = score_loglik(one, task, items, FewShotSampler([], 0))
    b = score_loglik(many, task, items, FewShotSampler([], 0))
    for x, y in zip(a, b):
        assert x.loglikelihoods == pytest.approx(y.loglikelihoods, abs=1e-4)


def test_encode_pair_moves_trailing_space_and_prepends_bos(backend):
    tok = backend.tokenizer
    ctx, cont = encode_pair(tok, "Answer: ", "A")
    ctx2, cont2 = encode_pair(tok, "Answer:", " A")
    assert (ctx, cont) == (ctx2, cont2)
    assert ctx[0] == tok.bos_id and ctx[1:] + cont == tok.encode("Answer: A")


def test_fewshot_prompt_holds_examples_from_train(backend, sample_dir):
    task = TASKS["medmcqa"]
    items = task.load(sample_dir, "test").items[:2]
    train = task.load(sample_dir, "train").items
    results = score_loglik(backend, task, items, FewShotSampler(train, 2, seed=7))
    for item, res in zip(items, results):
        blocks = res.prompt.split("\n\n")
        assert len(blocks) == 3 and blocks[-1] == task.harness_prompt(item)
        for block in blocks[:2]:
            ex = next(t for t in train if task.harness_prompt(t) in block)
            assert block == task.harness_prompt(ex) + " " + ex.gold_letter
