"""Fault tolerance of whole runs: SIGKILL at an arbitrary moment and restart gives the uninterrupted run's
losses and weights bit for bit (fp32, CPU, TP=2 under torchrun)."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from safetensors.torch import load_file

from megapmc.checkpoint.checkpointing import read_tracker
from megapmc.testing.distributed import free_port
from megapmc.training.logging import METRICS_NAME, read_metrics

TOY = Path(__file__).with_name("toy_train.py")
TRAIN_ITERS = 12
FLAGS = ["--model", "tiny", "--vocab-size", "128", "--seq-length", "32", "--micro-batch-size", "2",
         "--global-batch-size", "8", "--lr", "3e-3", "--lr-warmup-iters", "2", "--train-iters", str(TRAIN_ITERS),
         "--tensor-model-parallel-size", "2", "--log-interval", "4", "--eval-interval", "5", "--eval-iters", "1",
         "--save-interval", "3", "--no-progress-bar", "--toy-masks"]


def _launch(save_dir: Path) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port",
           str(free_port()), str(TOY), *FLAGS, "--save", str(save_dir), "--load", str(save_dir)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)


def _descendants(pid: int) -> list[int]:
    """``pid`` and every process below it (torchrun puts its workers in their own sessions)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def _last_iteration(metrics: Path) -> int:
    if not metrics.is_file():
        return 0
    train, _ = read_metrics(metrics)
    return train[-1]["iteration"] if train else 0


def _finish(proc: subprocess.Popen) -> str:
    out, _ = proc.communicate(timeout=240)
    assert proc.returncode == 0, out.decode()
    return out.decode()


@pytest.mark.slow
@pytest.mark.distributed
def test_sigkill_and_resume_equals_uninterrupted_run(tmp_path):
    reference = tmp_path / "reference"
    _finish(_launch(reference))

    killed = tmp_path / "killed"
    proc = _launch(killed)
    deadline = time.time() + 240
    while _last_iteration(killed / METRICS_NAME) < 5 and proc.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    for pid in _descendants(proc.pid):  # the whole job at once, as when a node is lost
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.wait()
    at_kill = _last_iteration(killed / METRICS_NAME)
    assert 5 <= at_kill < TRAIN_ITERS, f"the run was at iteration {at_kill} when killed; the test needs it mid-run"
    resumed_from = read_tracker(killed)
    assert resumed_from is not None and resumed_from < TRAIN_ITERS
    out = _finish(_launch(killed))
    assert f"resumed from {killed / f'iter_{resumed_from:07d}'} at iteration {resumed_from}" in out

    ref_train, ref_valid = read_metrics(reference / METRICS_NAME)
    got_train, got_valid = read_metrics(killed / METRICS_NAME)
    assert [r["iteration"] for r in got_train] == list(range(1, TRAIN_ITERS + 1))
    for ref, got in zip(ref_train, got_train):
        assert (got["loss"], got["lr"], got["grad_norm"]) == (ref["loss"], ref["lr"], ref["grad_norm"]), ref["iteration"]
    assert [r["valid_loss"] for r in got_valid] == [r["valid_loss"] for r in ref_valid]
    final = f"iter_{TRAIN_ITERS:07d}"
    for name in ("model_tp00.safetensors", "model_tp01.safetensors", "optim_tp00_dp00.safetensors",
                 "optim_tp01_dp00.safetensors"):
        ref_sd, got_sd = load_file(reference / final / name), load_file(killed / final / name)
        assert ref_sd.keys() == got_sd.keys()
        for k in ref_sd:
            assert ref_sd[k].equal(got_sd[k]), f"{name}: {k} differs"
