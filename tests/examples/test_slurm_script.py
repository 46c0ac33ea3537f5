"""examples/pretrain_pmc_13b.slurm's signal and requeue logic, with `srun` and `scontrol` stubbed: the
time-limit SIGUSR1 (sent to the batch shell, --signal=B:USR1@300) reaches srun's tasks, and a job that saved
after it requeues itself (Slurm does not requeue a job that exits by itself); a finished job does not."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path


ROOT = Path(__file__).resolve().parents[2]

FAKE_SRUN = """#!{python}
import pathlib, signal, sys, time
log = pathlib.Path({log!r})
log.write_text("args " + " ".join(sys.argv[1:]) + "\\n")
def stop(signum, frame):
    with log.open("a") as f:
        f.write(f"got {{signal.Signals(signum).name}}\\n")
    sys.exit(0)  # the ranks saved and exited 0
signal.signal(signal.SIGUSR1, stop)
(log.parent / "srun.ready").touch()
time.sleep({run_for})
"""

FAKE_SCONTROL = """#!/usr/bin/env bash
if [[ "$1" == show ]]; then echo node001; exit 0; fi
echo "$@" >> {log!r}
"""


def _run(tmp_path, signal_it: bool):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    srun_log, scontrol_log = tmp_path / "srun.log", tmp_path / "scontrol.log"
    (bin_dir / "srun").write_text(FAKE_SRUN.format(python=sys.executable, log=str(srun_log),
                                                   run_for=60 if signal_it else 0.5))
    (bin_dir / "scontrol").write_text(FAKE_SCONTROL.format(log=str(scontrol_log)))
    for f in bin_dir.iterdir():
        f.chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "SLURM_JOB_NODELIST": "node[001-004]",
           "SLURM_NTASKS_PER_NODE": "8", "SLURM_NNODES": "4", "SLURM_JOB_ID": "4242"}
    proc = subprocess.Popen(["bash", "examples/pretrain_pmc_13b.slurm"], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    if signal_it:
        deadline = time.time() + 30
        while not (tmp_path / "srun.ready").exists():
            assert proc.poll() is None and time.time() < deadline
            time.sleep(0.05)
        proc.send_signal(signal.SIGUSR1)
    out, _ = proc.communicate(timeout=60)
    scontrol = scontrol_log.read_text() if scontrol_log.exists() else ""
    return proc.returncode, out.decode(), srun_log.read_text(), scontrol


def test_time_limit_signal_reaches_the_tasks_and_requeues(tmp_path):
    rc, out, srun, scontrol = _run(tmp_path, signal_it=True)
    assert rc == 0, out
    assert "got SIGUSR1" in srun and "--fallback-to-intact-checkpoint" in srun
    assert scontrol.split() == ["requeue", "4242"], out


def test_a_job_that_ends_by_itself_is_not_requeued(tmp_path):
    rc, out, srun, scontrol = _run(tmp_path, signal_it=False)
    assert rc == 0, out
    assert "got" not in srun and scontrol == ""
