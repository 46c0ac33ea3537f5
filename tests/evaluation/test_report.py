"""Reports: Wilson intervals, and the per-item file agreeing with results.json and the table."""
import json

import pytest

from megapmc.evaluation.evaluator import EvalConfig, evaluate
from megapmc.evaluation.report import wilson_interval
from scripted_backend import ScriptedBackend


@pytest.mark.parametrize("correct,total,low,high", [
    (0, 10, 0.0, 0.2775), (10, 10, 0.7225, 1.0), (5, 10, 0.2366, 0.7634), (640, 1000, 0.6098, 0.6692),
])
def test_wilson_interval_known_values(correct, total, low, high):
    lo, hi = wilson_interval(correct, total)
    assert lo == pytest.approx(low, abs=1e-4) and hi == pytest.approx(high, abs=1e-4)
    assert wilson_interval(0, 0) == (0.0, 0.0)


def _read_samples(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_generate_mode_report_agrees_with_samples(sample_dir, tmp_path):
    answers = ["###Answer: OPTION C IS CORRECT.", "B", "no idea", "The answer is (A)", "Nitrofurantoin", "yes"]
    config = EvalConfig(data_dir=str(sample_dir), output_dir=str(tmp_path), tasks=("medqa", "pubmedqa"),
                        mode="generate", max_new_tokens=200)
    results, _ = evaluate(ScriptedBackend(answers), config)
    report = json.loads((tmp_path / "results.json").read_text())
    table = (tmp_path / "results.md").read_text()
    assert report["ci_method"] == "wilson"
    for r in results:
        samples = _read_samples(tmp_path / f"samples_{r.task}.jsonl")
        assert len(samples) == r.n == report["tasks"][r.task]["n"]
        assert sum(s["correct"] for s in samples) == r.correct == report["tasks"][r.task]["correct"]
        assert [s["id"] for s in samples if s.get("chosen") is None] == r.unparsed_ids
        for s in samples:
            assert s["correct"] == (s.get("chosen") == s["gold"])
        row = next(line for line in table.splitlines() if line.startswith(f"| {r.task} |"))
        assert f"| {100 * r.correct / r.n:.2f} |" in row and f"| {r.unparsed} |" in row
    medqa = _read_samples(tmp_path / "samples_medqa.jsonl")
    # First item's gold is C (nitrofurantoin), answered "OPTION C IS CORRECT".
    assert medqa[0]["chosen"] == "C" and medqa[0]["parse_rule"] == "option_is_correct" and medqa[0]["correct"]
    assert medqa[2]["parse_rule"] == "unparsed" and medqa[2]["correct"] is False
    avg = sum(report["tasks"][t]["acc"] for t in ("medqa", "pubmedqa")) / 2
    assert report["average"] == pytest.approx(avg) and f"**{100 * avg:.2f}**" in table


def test_malformed_items_reach_the_report(sample_dir, tmp_path):
    data = tmp_path / "data"
    (data / "medmcqa").mkdir(parents=True)
    lines = (sample_dir / "medmcqa/dev.json").read_text().splitlines()
    (data / "medmcqa/dev.json").write_text("\n".join(lines[:3] + ["{broken"] + lines[3:]) + "\n")
    out = tmp_path / "out"
    results, _ = evaluate(ScriptedBackend(["A"]), EvalConfig(str(data), str(out), tasks=("medmcqa",), mode="generate"))
    assert results[0].n == 6 and len(results[0].malformed) == 1
    report = json.loads((out / "results.json").read_text())
    assert report["tasks"]["medmcqa"]["malformed"][0]["location"].endswith("dev.json:4")
    assert "1 malformed records skipped" in (out / "results.md").read_text()


def test_truncated_prompts_are_counted(sample_dir, tmp_path):
    # Character tokens: the sample PubMedQA prompts are 660-716 characters; 700 positions fit some.
    config = EvalConfig(str(sample_dir), str(tmp_path), tasks=("pubmedqa",), mode="generate", max_new_tokens=8)
    results, _ = evaluate(ScriptedBackend(["yes"], max_length=708), config)
    samples = _read_samples(tmp_path / "samples_pubmedqa.jsonl")
    lengths = [1 + len(s["prompt"]) for s in samples]  # BOS + one token per character
    assert results[0].truncated == sum(n > 700 for n in lengths) > 0
    assert all(s.get("extra", {}).get("truncated_tokens") == (n - 700 if n > 700 else None) for s, n in zip(samples, lengths))
    assert f"{results[0].truncated} prompts truncated" in (tmp_path / "results.md").read_text()


def test_generation_is_parsed_up_to_a_new_prompt(sample_dir, tmp_path):
    rambling = "The answer is unclear.\n\n### Instruction:\nAnswer.\n\n### Input:\n###Question: Next?\nAnswer: C"
    config = EvalConfig(str(sample_dir), str(tmp_path), tasks=("medqa",), mode="generate", limit=1,
                        max_new_tokens=200)
    (result,), _ = evaluate(ScriptedBackend([rambling]), config)
    (sample,) = _read_samples(tmp_path / "samples_medqa.jsonl")
    assert result.unparsed == 1 and sample["generation"] == rambling  # kept whole for the audit
