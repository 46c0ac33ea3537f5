"""The README's main command in its quickest form, so that it cannot rot: every step of the method on the
embedded sample data, then a second run that reuses everything."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _losses(metrics: Path) -> list[float]:
    records = [json.loads(line) for line in metrics.read_text().splitlines()]
    return [r["loss"] for r in records if "loss" in r]


@pytest.mark.slow
def test_quick_sample_pipeline_runs_end_to_end_and_reuses(tmp_path):
    run = tmp_path / "run"
    cmd = [sys.executable, "examples/run_sample_pipeline.py", "--run-dir", str(run), "--quick"]
    first = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=900)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]

    pretrain = _losses(run / "pretrain" / "checkpoints" / "metrics.jsonl")
    sft = _losses(run / "sft" / "checkpoints" / "metrics.jsonl")
    assert pretrain[-1] < pretrain[0] - 1.0, pretrain  # knowledge injection learns the sample corpus
    assert sft[-1] < sft[0], sft  # instruction tuning's response-only loss falls
    for png in (run / "pretrain" / "run.png", run / "sft_run.png"):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (run / "hf_model" / "config.json").is_file()
    for mode in ("loglik", "generate"):
        results = json.loads((run / "eval" / mode / "results.json").read_text())
        assert set(results["tasks"]) == {"pubmedqa", "medmcqa", "medqa"}
        assert 0.0 <= results["average"] <= 1.0
    assert "## Zero-shot, log-likelihood scoring" in first.stdout and "| **Average** |" in first.stdout
    contamination = (run / "contamination" / "contamination.md").read_text()
    assert "| pubmedqa |" in contamination

    second = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, second.stderr[-3000:]
    assert second.stdout.count("done before, reusing") == 9


@pytest.mark.slow
def test_failing_step_stops_with_its_log(tmp_path):
    run = tmp_path / "run"
    (run / "corpus").mkdir(parents=True)
    (run / "corpus" / "books.jsonl").mkdir()  # a directory where the cleaner must write a file
    out = subprocess.run(
        [sys.executable, "examples/run_sample_pipeline.py", "--run-dir", str(run), "--quick"],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )
    assert out.returncode == 1
    assert "step 'corpus'" in out.stderr and str(run / "logs" / "corpus.log") in out.stderr
    assert not (run / "pretrain").exists()
