"""Per-item choices equal lm-evaluation-harness's own ``medqa_4options``, ``medmcqa`` and ``pubmedqa`` tasks.

The harness's task files are used as shipped (prompts, choices, metrics), with the dataset pointed at
the sample items written in the Hugging Face copies' formats. Runs where lm-eval is installed
(``pip install lm-eval``); the harness is an optional dependency of megapmc.
"""
import json
from pathlib import Path

import pytest
import torch

lm_eval = pytest.importorskip("lm_eval")
pytest.importorskip("accelerate")  # lm-eval[hf]

from megapmc.evaluation.backends import HFBackend, HFTokenizer  # noqa: E402
from megapmc.evaluation.fewshot import FewShotSampler  # noqa: E402
from megapmc.evaluation.scoring import score_loglik  # noqa: E402
from megapmc.evaluation.tasks import TASKS  # noqa: E402

pytestmark = pytest.mark.slow

# megapmc task -> (harness task directory and yaml, converter to the HF copy's record format)
HARNESS = {
    "medqa": ("medqa/medqa.yaml", lambda it: {"sent1": it.question, "label": it.gold,
                                              **{f"ending{i}": t for i, t in enumerate(it.texts)}}),
    "medmcqa": ("medmcqa/medmcqa.yaml", lambda it: {"question": it.question, "cop": it.gold,
                                                    **dict(zip(("opa", "opb", "opc", "opd"), it.texts))}),
    "pubmedqa": ("pubmedqa/pubmedqa.yaml", lambda it: {"QUESTION": it.question, "CONTEXTS": list(it.contexts),
                                                       "final_decision": it.texts[it.gold]}),
}


def _harness_task_dir(tmp_path: Path, sample_dir: Path) -> Path:
    tasks_root = Path(lm_eval.__file__).parent / "tasks"
    out = tmp_path / "harness_tasks"
    out.mkdir()
    for name, (yaml_rel, to_hf) in HARNESS.items():
        data = out / f"{name}.jsonl"
        data.write_text("".join(json.dumps(to_hf(it)) + "\n" for it in TASKS[name].load(sample_dir, "test").items))
        splits = {"train": str(data), "validation": str(data), "test": str(data)}
        (out / f"megapmc_{name}.yaml").write_text(
            f"include: {tasks_root / yaml_rel}\ntask: megapmc_{name}\ndataset_path: json\ndataset_name: null\n"
            f"dataset_kwargs:\n  data_files: {json.dumps(splits)}\n"
        )
    return out


def test_choices_equal_the_harness(tiny_hf_dir, sample_dir, tmp_path, monkeypatch):
    from lm_eval import simple_evaluate
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager
    from transformers import AutoModelForCausalLM, AutoTokenizer

    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "datasets_cache"))
    model = AutoModelForCausalLM.from_pretrained(tiny_hf_dir, dtype=torch.float32).eval()
    # A LLaMA tokenizer adds BOS when asked for special tokens, as the harness asks with add_bos_token.
    tokenizer = AutoTokenizer.from_pretrained(tiny_hf_dir, add_bos_token=True)
    harness = simple_evaluate(
        model=HFLM(pretrained=model, tokenizer=tokenizer, batch_size=4, add_bos_token=True, device="cpu"),
        tasks=[f"megapmc_{name}" for name in HARNESS], num_fewshot=0, log_samples=True,
        task_manager=TaskManager(include_path=str(_harness_task_dir(tmp_path, sample_dir)), include_defaults=False),
    )
    ours = HFBackend(model, HFTokenizer(tokenizer), batch_size=3, show_progress=False)
    for name in HARNESS:
        task = TASKS[name]
        items = task.load(sample_dir, "test").items
        samples = sorted(harness["samples"][f"megapmc_{name}"], key=lambda s: s["doc_id"])
        results = score_loglik(ours, task, items, FewShotSampler([], 0))
        assert len(samples) == len(results) == len(items)
        for sample, res in zip(samples, results):
            their_lls = [float(r[0]) for r in sample["filtered_resps"]]
            assert res.loglikelihoods == pytest.approx(their_lls, abs=1e-4)
            assert res.correct == bool(sample["acc"])
            if "acc_norm" in sample:  # the harness's pubmedqa reports acc only
                assert res.correct_norm == bool(sample["acc_norm"])
            assert sample["arguments"][0][0] == res.prompt
