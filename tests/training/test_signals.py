"""Signals through the launchers (issue 14): SIGTERM or SIGUSR1 to torchrun, to one worker, or to the
examples' launch wrapper (`run_torchrun` in examples/launch_common.sh, what Slurm's --signal=B: reaches)
end a 2-worker gloo run with exactly one checkpoint and no process left behind.

Exit codes: with the wrapper every cell exits 0. Bare torchrun exits 0 when a worker is signalled; signalled
itself it cannot (it raises SignalException after forwarding SIGTERM: exit 1; SIGUSR1, which it does not
handle by default, kills it), but the workers still save once and exit on their own (parent-death signal).
"""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from megapmc.checkpoint.checkpointing import iteration_dirs, read_tracker
from megapmc.testing.distributed import free_port
from megapmc.training.metrics_file import METRICS_NAME, read_metrics

ROOT = Path(__file__).resolve().parents[2]
TOY = Path(__file__).with_name("toy_train.py")
FLAGS = ["--model", "tiny", "--vocab-size", "128", "--seq-length", "16", "--micro-batch-size", "2",
         "--global-batch-size", "4", "--lr", "3e-3", "--train-iters", "100000", "--log-interval", "1",
         "--eval-interval", "0", "--no-progress-bar"]


def _launch(launcher: str, save: Path, *extra: str, env: dict | None = None) -> subprocess.Popen:
    args = ["--master-port", str(free_port()), str(TOY), *FLAGS, "--save", str(save), "--load", str(save), *extra]
    if launcher == "torchrun":
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", *args]
    else:
        script = 'source examples/launch_common.sh; run_torchrun 2 "$@"'
        cmd = ["bash", "-c", script, "run_torchrun", *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "SCRIPT": "test", "PATH": f"{Path(sys.executable).parent}:"
           + os.environ["PATH"], **(env or {})}
    return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)


def _children(pid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    out.append(int(entry.name))
            except (OSError, IndexError, ValueError):
                pass
    return out


def _cmdline(pid: int) -> str:
    try:
        return (Path("/proc") / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _torchrun_pid(proc: subprocess.Popen, launcher: str) -> int:
    if launcher == "torchrun":
        return proc.pid
    for _ in range(200):
        # Only torchrun's own argv has --nproc-per-node (the wrapper adds it); the wrapper's forked
        # subshells (before they exec mktemp, torchrun, ...) show the wrapper's argv instead.
        found = [p for p in _children(proc.pid) if "--nproc-per-node" in _cmdline(p)]
        if found:
            return found[0]
        time.sleep(0.05)
    raise AssertionError("the wrapper started no torchrun")


def _running(save: Path) -> list[int]:
    """Processes whose command line names this run's directory (torchrun and its workers)."""
    return [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit() and str(save) in _cmdline(int(p.name))]


CELLS = [(sig, receiver, launcher) for launcher in ("torchrun", "wrapper") for receiver in ("torchrun", "worker")
         for sig in ("SIGTERM", "SIGUSR1")] + [(sig, "wrapper", "wrapper") for sig in ("SIGTERM", "SIGUSR1")]


def _wait_for_iterations(proc: subprocess.Popen, save: Path, n: int) -> None:
    deadline = time.time() + 120
    while not (save / METRICS_NAME).is_file() or len(read_metrics(save / METRICS_NAME)[0]) < n:
        assert proc.poll() is None and time.time() < deadline, proc.stdout.read().decode()
        time.sleep(0.05)


@pytest.mark.slow
@pytest.mark.distributed
@pytest.mark.parametrize("sig,receiver,launcher", CELLS, ids=["-".join(c) for c in CELLS])
def test_signal_saves_once_and_exits_cleanly(tmp_path, sig, receiver, launcher):
    save = tmp_path / "run"
    proc = _launch(launcher, save)
    try:
        torchrun = _torchrun_pid(proc, launcher)
        _wait_for_iterations(proc, save, 2)
        target = {"torchrun": torchrun, "wrapper": proc.pid}.get(receiver)
        if receiver == "worker":
            target = sorted(_children(torchrun))[-1]  # the last rank: the signal must reach rank 0 too
        os.kill(target, getattr(signal, sig))
        out, _ = proc.communicate(timeout=180)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    out = out.decode()
    if launcher == "torchrun" and receiver == "torchrun":
        expected = 1 if sig == "SIGTERM" else -signal.SIGUSR1
    else:
        expected = 0
    assert proc.returncode == expected, out
    deadline = time.time() + 120  # workers that outlived a killed torchrun finish their save and exit
    while _running(save) and time.time() < deadline:
        time.sleep(0.2)
    assert not _running(save), f"left running: {_running(save)}\n{out}"
    saved = read_tracker(save)
    assert saved is not None and [it for it, _ in iteration_dirs(save)] == [saved], out
    assert read_metrics(save / METRICS_NAME)[0][-1]["iteration"] == saved
    if not (launcher == "torchrun" and receiver == "torchrun" and sig == "SIGUSR1"):  # stdout died with torchrun
        assert out.count(f"RESULT {saved} signal") == 2, out


@pytest.mark.slow
@pytest.mark.distributed
@pytest.mark.parametrize("timeout_s,saved", [("1", False), (None, True)], ids=["torchrun-cuts-it", "wrapper-default"])
def test_a_slow_save_after_sigterm_to_torchrun_is_not_cut(tmp_path, timeout_s, saved):
    """torchrun SIGKILLs its workers SHUTDOWN_TIMEOUT s after forwarding a signal (its own default is 30 s):
    a 4 s save survives the wrapper's default (1800 s) and is cut at 1 s, leaving no checkpoint behind."""
    save = tmp_path / "run"
    proc = _launch("wrapper", save, "--toy-slow-save", "4",
                   env={} if timeout_s is None else {"SHUTDOWN_TIMEOUT": timeout_s})
    try:
        torchrun = _torchrun_pid(proc, "wrapper")
        _wait_for_iterations(proc, save, 2)
        os.kill(torchrun, signal.SIGTERM)
        out, _ = proc.communicate(timeout=180)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    out = out.decode()
    assert (proc.returncode == 0) == saved, out
    assert (read_tracker(save) is not None) == saved, out
