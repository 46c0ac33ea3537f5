"""tools/evaluate.py and tools/check_contamination.py end to end, in-process."""
import importlib.util
import json
from pathlib import Path

import pytest

TOOLS = Path(__file__).resolve().parents[2] / "tools"


def _tool(name):
    spec = importlib.util.spec_from_file_location(name, TOOLS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_evaluate_hf_dir_on_sample_items(tiny_hf_dir, tmp_path, capsys):
    out = tmp_path / "out"
    _tool("evaluate").main(["--hf-dir", str(tiny_hf_dir), "--tasks", "pubmedqa,medqa", "--limit", "2",
                            "--num-fewshot", "1", "--output-dir", str(out), "--batch-size", "4", "--dtype", "fp32"])
    printed = capsys.readouterr().out
    assert printed.startswith("found pubmedqa: ") and "ground truth" in printed  # what was found
    assert "pubmedqa: 5 items from " in printed and "(pubmedqa-original)" in printed
    assert "| Task |" in printed and "| **Average** |" in printed
    assert (out / "results.md").read_text() in printed
    report = json.loads((out / "results.json").read_text())
    assert report["config"]["num_fewshot"] == 1 and set(report["tasks"]) == {"pubmedqa", "medqa"}
    assert report["config"]["model"]["hf_dir"] == str(tiny_hf_dir) and report["config"]["model"]["dtype"] == "fp32"
    assert all(r["n"] == 2 for r in report["tasks"].values())
    assert len((out / "samples_medqa.jsonl").read_text().splitlines()) == 2
    harness = json.loads((out / "results_lm_eval.json").read_text())  # lm-eval's results layout
    assert harness["results"]["medqa"]["acc,none"] == report["tasks"]["medqa"]["acc"]
    assert harness["n-shot"]["medqa"] == 1 and harness["n-samples"]["medqa"]["effective"] == 2


@pytest.mark.parametrize("argv,message", [
    (["--tasks", "pubmedqa,mmlu"], "unknown task 'mmlu'"),
    (["--mode", "generate", "--max-new-tokens", "0"], "--max-new-tokens must be positive"),
    (["--data-dir", "/nonexistent/benchmarks"], "--data-dir /nonexistent/benchmarks: not a directory"),
    (["--limit", "0"], "--limit must be positive"),
])
def test_evaluate_bad_flags_exit_with_a_message(argv, message, tmp_path):
    with pytest.raises(SystemExit, match=message):
        _tool("evaluate").main(["--hf-dir", str(tmp_path), "--output-dir", str(tmp_path / "o"), *argv])


FIXTURES = Path(__file__).resolve().parent / "fixtures"


@pytest.mark.parametrize("argv,message", [
    (["--tasks", "medmcqa", "--medmcqa-file", str(FIXTURES / "medmcqa_original/medmcqa/test.json")],
     "test.json: unlabelled"),
    # the third task's file is missing: found out before the model is loaded, not after two tasks
    (["--tasks", "pubmedqa,medqa,medmcqa", "--data-dir", str(FIXTURES / "medqa_original")],
     "pubmedqa: no file found under --data-dir"),
    (["--tasks", "medqa", "--medqa-file", "/nonexistent.jsonl"], "--medqa-file /nonexistent.jsonl: not found"),
    (["--ppl-files", "general"], "expected NAME=PATH"),
])
def test_bad_benchmark_files_fail_before_the_model_loads(argv, message, tmp_path):
    # --hf-dir has no model: the data error must come first.
    with pytest.raises(SystemExit, match=message):
        _tool("evaluate").main(["--hf-dir", str(tmp_path), "--output-dir", str(tmp_path / "o"), *argv])


def test_strict_flag_stops_at_a_malformed_record(tmp_path):
    bad = tmp_path / "test.jsonl"
    bad.write_text((FIXTURES / "medqa_bare_test/test.jsonl").read_text() + "{oops\n")
    with pytest.raises(SystemExit, match=f"{bad}:4: not valid JSON"):
        _tool("evaluate").main(["--hf-dir", str(tmp_path), "--output-dir", str(tmp_path / "o"), "--tasks", "medqa",
                                "--medqa-file", str(bad), "--strict"])


def test_evaluate_missing_model_dir(tmp_path):
    with pytest.raises(SystemExit, match="no config.json"):
        _tool("evaluate").main(["--hf-dir", str(tmp_path), "--output-dir", str(tmp_path / "o")])


def test_check_contamination_cli(sample_dir, tmp_path, capsys):
    line = (sample_dir / "medqa/US/4_options/phrases_no_exclude_test.jsonl").read_text().splitlines()[0]
    train = tmp_path / "sft.jsonl"
    train.write_text(json.dumps({"instruction": "Answer.", "input": json.loads(line)["question"], "output": "C"}) + "\n")
    _tool("check_contamination").main(["--train", str(train), "--output-dir", str(tmp_path / "c")])
    assert "| medqa | 6 | 1 | 16.67 |" in capsys.readouterr().out
    assert json.loads((tmp_path / "c/contamination.json").read_text())["tasks"]["medqa"]["items"][0]["id"] == "test-1"
