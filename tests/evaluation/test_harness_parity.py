"""Per-item log-likelihoods equal lm-evaluation-harness's own ``medqa_4options``, ``medmcqa`` and
``pubmedqa`` tasks within 1e-4, on every downloadable layout (``fixtures/``, odd whitespace included),
for the HF backend and for the megapmc backend (one forward per item, the checkpoint imported from the
same HF weights).

The harness's task files are used as shipped (prompts, choices, metrics), with the dataset pointed at
the fixture in the layout that task loads (GBaker MedQA, openlifescienceai MedMCQA, bigbio PubMedQA).
Runs where lm-eval is installed (``pip install lm-eval[hf]``); the harness is an optional dependency.
"""
import json
from pathlib import Path

import pytest
import torch

lm_eval = pytest.importorskip("lm_eval")
pytest.importorskip("accelerate")  # lm-eval[hf]

from benchmark_layouts import FIXTURES, LAYOUTS, layout_dir  # noqa: E402

from megapmc.evaluation.backends import HFBackend, HFTokenizer, MegapmcBackend  # noqa: E402
from megapmc.evaluation.fewshot import FewShotSampler  # noqa: E402
from megapmc.evaluation.scoring import score_loglik  # noqa: E402
from megapmc.evaluation.tasks import TASKS  # noqa: E402

pytestmark = pytest.mark.slow

# megapmc task -> (harness task yaml, the fixture in the layout that task loads)
HARNESS = {
    "medqa": ("medqa/medqa.yaml", "medqa_gbaker/data/test.jsonl"),
    "medmcqa": ("medmcqa/medmcqa.yaml", "medmcqa_hf/validation.jsonl"),
    "pubmedqa": ("pubmedqa/pubmedqa.yaml", "pubmedqa_bigbio/pubmed_qa_labeled_fold0_source/test.jsonl"),
}


def _harness_task_dir(tmp_path: Path) -> Path:
    tasks_root = Path(lm_eval.__file__).parent / "tasks"
    out = tmp_path / "harness_tasks"
    out.mkdir()
    for name, (yaml_rel, data) in HARNESS.items():
        path = str(FIXTURES / data)
        splits = {"train": path, "validation": path, "test": path}
        (out / f"megapmc_{name}.yaml").write_text(
            f"include: {tasks_root / yaml_rel}\ntask: megapmc_{name}\ndataset_path: json\ndataset_name: null\n"
            f"dataset_kwargs:\n  data_files: {json.dumps(splits)}\n"
        )
    return out


@pytest.fixture(scope="module")
def harness(tiny_hf_dir, tmp_path_factory):
    """lm-eval's per-item samples for each task, and our two backends on the same weights."""
    from lm_eval import simple_evaluate
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from megapmc.convert import import_from_hf

    tmp = tmp_path_factory.mktemp("harness")
    mp = pytest.MonkeyPatch()
    mp.setenv("HF_DATASETS_OFFLINE", "1")
    mp.setenv("HF_DATASETS_CACHE", str(tmp / "datasets_cache"))
    model = AutoModelForCausalLM.from_pretrained(tiny_hf_dir, dtype=torch.float32).eval()
    # A LLaMA tokenizer adds BOS when asked for special tokens, as the harness asks with add_bos_token.
    tokenizer = AutoTokenizer.from_pretrained(tiny_hf_dir, add_bos_token=True)
    out = simple_evaluate(
        model=HFLM(pretrained=model, tokenizer=tokenizer, batch_size=4, add_bos_token=True, device="cpu"),
        tasks=[f"megapmc_{name}" for name in HARNESS], num_fewshot=0, log_samples=True,
        task_manager=TaskManager(include_path=str(_harness_task_dir(tmp)), include_defaults=False),
    )
    mp.undo()
    samples = {name: sorted(out["samples"][f"megapmc_{name}"], key=lambda s: s["doc_id"]) for name in HARNESS}
    hf = HFBackend(model, HFTokenizer(tokenizer), batch_size=3, show_progress=False)
    ckpt = import_from_hf(tiny_hf_dir, tmp / "megapmc", tp=1, dtype="fp32")
    megapmc = MegapmcBackend.from_checkpoint(ckpt, tokenizer=hf.tokenizer, batch_size=2, device=torch.device("cpu"),
                                             show_progress=False)
    return samples, {"hf": hf, "megapmc": megapmc}


@pytest.mark.parametrize("backend", ["hf", "megapmc"])
@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_loglikelihoods_equal_the_harness(harness, layout, backend, tmp_path):
    samples, backends = harness
    name = LAYOUTS[layout][0]
    task = TASKS[name]
    items = task.load(layout_dir(layout, tmp_path), "test").items
    results = score_loglik(backends[backend], task, items, FewShotSampler([], 0))
    assert len(samples[name]) == len(results) == len(items)
    for sample, res in zip(samples[name], results):
        assert sample["arguments"][0][0] == res.prompt  # the same text, whitespace and all
        their_lls = [float(r[0]) for r in sample["filtered_resps"]]
        assert res.loglikelihoods == pytest.approx(their_lls, abs=1e-4)
        assert res.correct == bool(sample["acc"])
        if "acc_norm" in sample:  # the harness's pubmedqa reports acc only
            assert res.correct_norm == bool(sample["acc_norm"])
