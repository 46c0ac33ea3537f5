"""The README's main command stops at the first failing step and names its log (the full run and its
reuse are tested in test_ablation.py)."""
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_failing_step_stops_with_its_log(tmp_path):
    run = tmp_path / "run"
    (run / "world" / "corpus" / "books.jsonl").mkdir(parents=True)  # a directory where the world writes a file
    out = subprocess.run(
        [sys.executable, "examples/run_sample_pipeline.py", "--run-dir", str(run), "--quick"],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )
    assert out.returncode == 1
    assert "step 'world'" in out.stderr and str(run / "logs" / "world.log") in out.stderr
    assert not (run / "tokenizer.model").exists()
