"""A training worker's side of the launch wrapper's contract (examples/launch_common.sh, ``run_torchrun``).

torchrun cannot report a clean save-and-exit after a signal: when it receives SIGTERM (or SIGUSR1, if it
handles it) it forwards the signal, waits for the workers and then exits 1 whatever they returned, and a
SIGUSR1 it does not handle kills it outright. So each worker

- registers its pid in ``$MEGAPMC_EXIT_STATUS_DIR`` (when the wrapper set it), so the wrapper can wait for
  workers that outlive torchrun, and writes its outcome there when the run ends cleanly; the wrapper maps
  torchrun's exit code to 0 when every worker of the node reported a clean end;
- asks the kernel for SIGTERM when its parent (torchrun) dies (``PR_SET_PDEATHSIG``), so a killed torchrun
  leaves no worker training unsupervised: each saves once and exits.
"""
from __future__ import annotations

import ctypes
import os
import signal

from megapmc.utils.io import write_json_atomic

STATUS_DIR_ENV = "MEGAPMC_EXIT_STATUS_DIR"
_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def _rank() -> str:
    return os.environ.get("RANK", "0")


def register_worker(environ=os.environ) -> None:
    """Call once at start-up, before the signal handlers can fire."""
    if "TORCHELASTIC_RUN_ID" in environ:  # started by torchrun (not by srun, whose tasks have no such parent)
        parent = os.getppid()
        try:
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
        except (OSError, AttributeError):  # not Linux: no parent-death signal, the wrapper still waits
            pass
        if os.getppid() != parent:  # torchrun died before the request took effect
            os.kill(os.getpid(), signal.SIGTERM)
    status_dir = environ.get(STATUS_DIR_ENV)
    if status_dir:
        write_json_atomic(os.path.join(status_dir, f"rank{_rank()}.pid"), {"pid": os.getpid()})


def report_clean_exit(exit_reason: str, iteration: int, environ=os.environ) -> None:
    """Call when the run ended without an error (finished, or saved and stopped after a signal)."""
    status_dir = environ.get(STATUS_DIR_ENV)
    if status_dir:
        write_json_atomic(os.path.join(status_dir, f"rank{_rank()}.exit"),
                          {"exit_reason": exit_reason, "iteration": iteration, "code": 0})

