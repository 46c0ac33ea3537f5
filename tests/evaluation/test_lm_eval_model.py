"""The ``megapmc`` lm-eval model, in-process on a tiny checkpoint: found by name in lm-eval's registry,
and equal to lm-eval's own HF model on the same weights for loglikelihood (1e-4), greedy
generate_until and loglikelihood_rolling."""
import json
from pathlib import Path

import pytest
import torch

lm_eval = pytest.importorskip("lm_eval")
pytest.importorskip("accelerate")

from benchmark_layouts import FIXTURES  # noqa: E402

pytestmark = pytest.mark.slow
DATA = str(FIXTURES / "medqa_gbaker/data/test.jsonl")


def _task_dir(tmp_path: Path) -> Path:
    tasks_root = Path(lm_eval.__file__).parent / "tasks"
    splits = json.dumps({"train": DATA, "validation": DATA, "test": DATA})
    common = f"dataset_path: json\ndataset_name: null\ndataset_kwargs:\n  data_files: {splits}\n"
    out = tmp_path / "tasks"
    out.mkdir()
    (out / "ll.yaml").write_text(f"include: {tasks_root / 'medqa/medqa.yaml'}\ntask: tiny_ll\n{common}")
    (out / "gen.yaml").write_text(
        f"task: tiny_gen\n{common}test_split: test\noutput_type: generate_until\ndoc_to_text: \"{{{{sent1}}}}\"\n"
        "doc_to_target: \"{{ending0}}\"\ngeneration_kwargs:\n  until: [\".\"]\n  max_gen_toks: 6\n"
        "metric_list:\n  - metric: exact_match\n")
    (out / "roll.yaml").write_text(
        f"task: tiny_roll\n{common}test_split: test\noutput_type: loglikelihood_rolling\n"
        "doc_to_text: \"\"\ndoc_to_target: \"{{sent1}}\"\nmetric_list:\n  - metric: word_perplexity\n")
    return out


def test_megapmc_model_equals_the_hf_model(tiny_hf_dir, tmp_path, monkeypatch):
    from lm_eval import simple_evaluate
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager
    from transformers import AutoModelForCausalLM, AutoTokenizer

    import megapmc.evaluation.lm_eval_model  # noqa: F401  registers "megapmc"
    from megapmc.convert import import_from_hf

    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "datasets_cache"))
    tasks = ["tiny_ll", "tiny_gen", "tiny_roll"]
    manager = TaskManager(include_path=str(_task_dir(tmp_path)), include_defaults=False)
    ckpt = import_from_hf(tiny_hf_dir, tmp_path / "ckpt", tp=1, dtype="fp32")
    model = AutoModelForCausalLM.from_pretrained(tiny_hf_dir, dtype=torch.float32).eval()
    tokenizer = AutoTokenizer.from_pretrained(tiny_hf_dir, add_bos_token=True)
    theirs = simple_evaluate(model=HFLM(pretrained=model, tokenizer=tokenizer, batch_size=2, add_bos_token=True,
                                        device="cpu"), tasks=tasks, log_samples=True, task_manager=manager)
    ours = simple_evaluate(model="megapmc", model_args=f"load={ckpt},tokenizer={tiny_hf_dir},batch_size=2,dtype=fp32",
                           tasks=tasks, log_samples=True, task_manager=manager)
    assert ours["config"]["model"] == "megapmc"
    for task in tasks:
        a = sorted(ours["samples"][task], key=lambda s: s["doc_id"])
        b = sorted(theirs["samples"][task], key=lambda s: s["doc_id"])
        assert len(a) == len(b) == 3
        for x, y in zip(a, b):
            if task == "tiny_gen":
                assert x["resps"] == y["resps"]
            else:
                got = [float(r[0]) if isinstance(r, (list, tuple)) else float(r) for r in x["filtered_resps"]]
                want = [float(r[0]) if isinstance(r, (list, tuple)) else float(r) for r in y["filtered_resps"]]
                assert got == pytest.approx(want, abs=1e-4)
