"""tools/evaluate.py's generation budget fits a rationale-first answer (PMC-LLaMA's inference: 1000)."""
import importlib.util
from pathlib import Path

TOOL = Path(__file__).resolve().parents[2] / "tools" / "evaluate.py"


def test_generate_default_budget_is_the_released_inference_one():
    spec = importlib.util.spec_from_file_location("evaluate_tool", TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    # SFT/eval/qa_inference.py and the README of chaoyi-wu/PMC-LLaMA generate with max_new_tokens=1000;
    # generation stops at EOS, so a short answer costs no more.
    args = module.parse_args(["--hf-dir", "model", "--output-dir", "out", "--mode", "generate"])
    assert args.max_new_tokens == 1000
