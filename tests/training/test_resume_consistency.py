"""Resume under torchrun at TP=2 (issue 14): a problem on one rank is an error on every rank, never a hang;
the ranks agree on the state before the first step; a damaged checkpoint names the newest intact one, and
--fallback-to-intact-checkpoint resumes it; a lost tracker is an error listing the checkpoints."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from megapmc.checkpoint.checkpointing import TRACKER_NAME
from megapmc.testing.distributed import free_port

TOY = Path(__file__).with_name("toy_train.py")
FLAGS = ["--model", "tiny", "--vocab-size", "128", "--seq-length", "16", "--micro-batch-size", "2",
         "--global-batch-size", "4", "--lr", "3e-3", "--log-interval", "1", "--eval-interval", "0",
         "--no-progress-bar", "--tensor-model-parallel-size", "2", "--save-interval", "2"]


def _torchrun(run: Path, *extra: str, iters: int = 6) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port", str(free_port()),
           str(TOY), *FLAGS, "--train-iters", str(iters), "--save", str(run), "--load", str(run), *extra]
    return subprocess.run(cmd, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True,
                          timeout=180)  # a hang fails here instead of holding the suite


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    run = tmp_path_factory.mktemp("base") / "run"
    proc = _torchrun(run, iters=4)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return run


def _copy(saved, tmp_path) -> Path:
    run = tmp_path / "run"
    shutil.copytree(saved, run)
    return run


def _flip_last_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-1] ^= 0x01
    path.write_bytes(bytes(data))


@pytest.mark.slow
@pytest.mark.distributed
def test_ranks_that_disagree_fail_together(saved, tmp_path):
    run = _copy(saved, tmp_path)
    state = run / "iter_0000004" / "state_tp01_dp00.json"
    obj = json.loads(state.read_text())
    obj["consumed_samples"] += 4
    state.write_text(json.dumps(obj))
    proc = _torchrun(run, "--verify-checkpoint", "off")
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    expected = "the ranks disagree on the state to resume (consumed_samples: rank 0 has 16, rank 1 has 20"
    assert out.count(expected) == 2, out


@pytest.mark.slow
@pytest.mark.distributed
def test_damage_on_one_rank_is_an_error_on_both_then_fallback(saved, tmp_path):
    run = _copy(saved, tmp_path)
    shard = run / "iter_0000004" / "model_tp01.safetensors"
    _flip_last_byte(shard)
    proc = _torchrun(run)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert f"(rank 1) {shard}: checksum mismatch" in out, out  # rank 0's error names rank 1's file
    assert out.count("the newest intact checkpoint is iter_0000002: resume it with --ckpt-step 2") == 2, out

    proc = _torchrun(run, "--fallback-to-intact-checkpoint")
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert f"falling back to {run / 'iter_0000002'}" in out and "resumed from" in out and "at iteration 2" in out
    assert "verified checkpoint iter_0000002 (full): 8 files" in out  # config, model, state, optimizer × 2 ranks


@pytest.mark.slow
@pytest.mark.distributed
def test_lost_tracker_is_an_error_listing_the_checkpoints(saved, tmp_path):
    run = _copy(saved, tmp_path)
    (run / TRACKER_NAME).unlink()
    proc = _torchrun(run)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "checkpoints present: iter_0000004, iter_0000002" in out
    assert sorted(p.name for p in run.glob("iter_*")) == ["iter_0000002", "iter_0000004"]  # nothing overwritten
