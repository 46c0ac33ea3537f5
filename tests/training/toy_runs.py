"""Whole toy runs (toy_train.py under torchrun) for the fault-tolerance tests: start one, SIGKILL the whole
job once its metrics reach an iteration, and compare two runs' metrics and files bit for bit."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from safetensors.torch import load_file

from megapmc.testing.distributed import free_port
from megapmc.training.metrics_file import METRICS_NAME, read_metrics

TOY = Path(__file__).with_name("toy_train.py")


def launch(save_dir: Path, flags: list[str], nproc: int = 2, *extra: str) -> subprocess.Popen:
    """toy_train.py with ``flags`` saving to and resuming from ``save_dir``, its output captured."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(nproc), "--master-port",
           str(free_port()), str(TOY), *flags, "--save", str(save_dir), "--load", str(save_dir), *extra]
    return subprocess.Popen(cmd, env={**os.environ, "OMP_NUM_THREADS": "1"}, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, start_new_session=True)


def finish(proc: subprocess.Popen, timeout: float = 480) -> str:
    out, _ = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, out.decode()
    return out.decode()


def last_iteration(metrics: Path) -> int:
    if not metrics.is_file():
        return 0
    train, _ = read_metrics(metrics)
    return train[-1]["iteration"] if train else 0


def descendants(pid: int) -> list[int]:
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


def kill_job_at(proc: subprocess.Popen, save_dir: Path, iteration: int, delay: float = 0.0,
                timeout: float = 480) -> int:
    """SIGKILL the whole job (as when a node is lost) ``delay`` s after its metrics reach ``iteration``;
    return the last iteration it logged."""
    metrics = save_dir / METRICS_NAME
    deadline = time.time() + timeout
    while last_iteration(metrics) < iteration and proc.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    time.sleep(delay)  # a moment after it: inside the next step, or the save
    for pid in descendants(proc.pid):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.communicate()
    return last_iteration(metrics)


def assert_same_training(reference: Path, resumed: Path, train_iters: int, validation: bool = True) -> None:
    """Every iteration logged once, with the uninterrupted run's loss, lr and grad norm exactly."""
    ref_train, ref_valid = read_metrics(reference / METRICS_NAME)
    got_train, got_valid = read_metrics(resumed / METRICS_NAME)
    assert [r["iteration"] for r in got_train] == list(range(1, train_iters + 1))
    for ref, got in zip(ref_train, got_train):
        assert (got["loss"], got["lr"], got["grad_norm"]) == (ref["loss"], ref["lr"], ref["grad_norm"]), ref["iteration"]
    if validation:
        assert [r["valid_loss"] for r in got_valid] == [r["valid_loss"] for r in ref_valid]


def assert_same_files(reference: Path, got: Path, names: list[str]) -> None:
    """The safetensors files ``names`` of two checkpoint directories hold the same tensors bit for bit."""
    for name in names:
        ref_sd, got_sd = load_file(reference / name), load_file(got / name)
        assert ref_sd.keys() == got_sd.keys(), name
        for k in ref_sd:
            assert ref_sd[k].equal(got_sd[k]), f"{name}: {k} differs"
