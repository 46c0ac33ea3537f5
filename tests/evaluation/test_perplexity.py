"""Held-out perplexity (the forgetting check): the value from per-token log-probabilities, windows of
the model's length, the column in the results table, and bad files."""
import json
import math

import pytest
import torch

from megapmc.evaluation.backends import CausalLMBackend, LoglikResult
from megapmc.evaluation.evaluator import EvalConfig, evaluate
from megapmc.evaluation.perplexity import perplexity
from megapmc.evaluation.report import render_markdown
from scripted_backend import CharTokenizer


class UniformBackend(CausalLMBackend):
    """Every token has probability 1/10: perplexity 10 whatever the text; records the windows."""

    def __init__(self, max_length):
        self.tokenizer, self.max_length, self.requests = CharTokenizer(), max_length, []

    def loglikelihood(self, requests):
        self.requests += list(requests)
        return [LoglikResult(len(cont) * math.log(0.1), False) for _, cont in requests]


def test_perplexity_of_a_uniform_model_and_its_windows(tmp_path):
    path = tmp_path / "general.jsonl"
    path.write_text(json.dumps({"text": "x" * 25}) + "\n" + json.dumps({"text": "hello"}) + "\n")
    backend = UniformBackend(max_length=10)
    out = perplexity(backend, path)
    assert out["ppl"] == pytest.approx(10.0) and out["tokens"] == 30 and out["documents"] == 2
    assert [len(c) for _, c in backend.requests] == [10, 10, 5, 5]  # windows of the model's length
    assert all(ctx == [CharTokenizer.bos_id] for ctx, _ in backend.requests)


def test_perplexity_equals_exp_mean_nll_of_a_real_model(tiny_hf_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from megapmc.evaluation.backends import HFBackend, HFTokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_hf_dir, dtype=torch.float32).eval()
    backend = HFBackend(model, HFTokenizer(AutoTokenizer.from_pretrained(tiny_hf_dir)), show_progress=False)
    text = "The patient was given aspirin for chest pain."
    ids = [backend.tokenizer.bos_id] + backend.tokenizer.encode(text)
    with torch.no_grad():
        logp = torch.log_softmax(model(torch.tensor([ids])).logits[0, :-1], -1)
    nll = -logp.gather(-1, torch.tensor(ids[1:])[:, None]).mean().item()
    path = tiny_hf_dir.parent / "medical.txt"
    path.write_text(text)
    assert perplexity(backend, path)["ppl"] == pytest.approx(math.exp(nll), rel=1e-5)


def test_perplexity_column_in_the_results_table(sample_dir, tmp_path):
    from scripted_backend import ScriptedBackend

    class Scripted(ScriptedBackend):
        def loglikelihood(self, requests):
            return UniformBackend.loglikelihood(self, requests)

    held_out = tmp_path / "general.txt"
    held_out.write_text("some general text")
    config = EvalConfig(str(sample_dir), str(tmp_path / "out"), tasks=("medqa",), mode="generate",
                        ppl_files={"general": str(held_out)})
    backend = Scripted(["A"])
    backend.requests = []
    results, ppl = evaluate(backend, config)
    table = render_markdown(results, ppl)
    assert "| PPL general |" in table.splitlines()[0] and "| 10.000 |" in table
    assert json.loads((tmp_path / "out/results.json").read_text())["perplexity"]["general"]["ppl"] == pytest.approx(10)
    assert "PPL general" in (tmp_path / "out/results.md").read_text()


@pytest.mark.parametrize("content,message", [(b"", "empty"), (b"\xff\xfe", "not UTF-8"), (b"{bad\n", "not valid JSON"),
                                             (b'{"txt": 1}\n', "string 'text'")])
def test_bad_held_out_files(content, message, tmp_path):
    path = tmp_path / "held.jsonl"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=f"{path}.*{message}"):
        perplexity(UniformBackend(10), path)
