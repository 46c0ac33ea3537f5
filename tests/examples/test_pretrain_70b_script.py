"""examples/pretrain_pmc_70b.sh: its dry run resolves LLaMA-2-70B at TP 8 x PP 2 x DP 2 on 32 GPUs and
the estimator says the fullest stage fits 80 GB."""
import subprocess
from pathlib import Path

import pytest

from test_pretrain_scripts import env_13b  # noqa: F401  (the fixture: generated shards, tokenizer)

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "examples/pretrain_pmc_70b.sh"


def test_bash_syntax():
    subprocess.run(["bash", "-n", str(SCRIPT)], check=True)


@pytest.mark.slow
def test_dry_run_shows_the_pipelined_layout_fits(env_13b):  # noqa: F811
    proc = subprocess.run(["bash", str(SCRIPT), "--dry-run"], env={**env_13b, "NNODES": "4"}, cwd=ROOT,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert '"pipeline_model_parallel_size": 2' in out and '"num_layers": 80' in out
    assert "32 processes = TP 8 x DP 2 x PP 2; 1600 micro-batches of 1 per rank" in out
    assert "TP 8 x DP 2 x PP 2, micro-batch 1, seq 2048" in out
    assert "pipeline: 1F1B, 1600 micro-batches, bubble 0.1% of the step; stage 0" in out
    total = float(out.split("  total")[1].split("GiB")[0])
    assert total < 72  # 80 GiB with the 10% reserve
    assert "TP 8 x DP 4: " in out and "TP 8 x DP 1 x PP 4: " in out
