"""A finished TP=2 run, and re-running it, exit 0 every time (issue 14): the process groups are torn down in
order (a barrier, then destroy) instead of at interpreter exit, which aborted one rank now and then with
"terminate called without an active exception" after the final checkpoint."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

from megapmc.testing.distributed import free_port

TOY = Path(__file__).with_name("toy_train.py")
FLAGS = ["--model", "tiny", "--vocab-size", "128", "--seq-length", "16", "--micro-batch-size", "2",
         "--global-batch-size", "4", "--lr", "3e-3", "--train-iters", "2", "--log-interval", "1",
         "--eval-interval", "0", "--no-progress-bar", "--tensor-model-parallel-size", "2",
         "--overlap-param-gather", "--use-distributed-optimizer"]


@pytest.mark.slow
@pytest.mark.distributed
def test_finish_and_rerun_exit_zero_repeatedly(tmp_path):
    run = tmp_path / "run"
    for phase in ("finish", "rerun", "rerun again"):
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port",
               str(free_port()), str(TOY), *FLAGS, "--save", str(run), "--load", str(run)]
        proc = subprocess.run(cmd, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True,
                              timeout=120)
        out = proc.stdout + proc.stderr
        assert proc.returncode == 0 and "terminate called" not in out, f"{phase}: {out}"
        assert out.count("RESULT 2 finished") == 2, out
