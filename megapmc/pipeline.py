"""A resumable chain of command-line steps, each writing into one run folder.

The sample pipeline (examples/run_sample_pipeline.py) is such a chain. A step is skipped when its
marker ``.steps/NAME.done`` exists and records the same command, so running twice reuses what is
built and editing a step's command redoes it and the steps after it. A step redone because its inputs
changed (or ``force``) first deletes its ``outputs``, so a trainer that resumes from its own
checkpoints starts afresh; a step that was merely interrupted keeps them and resumes. Each step's
output is shown live and kept in ``logs/NAME.log``; the first failing step stops the chain with its
log's path. Each step reports its wall time and the CPU time of its processes (on a shared machine the
CPU time is the number that says what the step costs).
"""
from __future__ import annotations

import json
import os
import resource
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Step:
    name: str
    title: str
    commands: list[list[str]]
    env: dict[str, str] = field(default_factory=dict)
    outputs: list[Path] = field(default_factory=list)  # deleted before a redo with changed inputs

    def fingerprint(self) -> str:
        return json.dumps({"commands": self.commands, "env": self.env}, sort_keys=True)


class StepFailed(RuntimeError):
    pass


def _run_logged(cmd: list[str], log, env: dict[str, str], cwd: Path) -> int:
    log.write(f"$ {shlex.join(cmd)}\n")
    log.flush()
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env={**os.environ, **env}, cwd=cwd,
        bufsize=0,
    )
    # Byte chunks, not lines: tqdm redraws with carriage returns and would otherwise appear only at the end.
    while chunk := os.read(proc.stdout.fileno(), 4096):
        sys.stdout.buffer.write(chunk)
        sys.stdout.flush()
        log.write(chunk.decode(errors="replace"))
    return proc.wait()


def _children_cpu() -> float:
    """User + system seconds of every finished child process so far (the steps' commands)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_steps(steps: list[Step], run_dir: Path, cwd: Path, force: bool = False) -> None:
    """Run ``steps`` in order; raise StepFailed naming the step and its log at the first failure."""
    markers, logs = run_dir / ".steps", run_dir / "logs"
    markers.mkdir(parents=True, exist_ok=True)
    logs.mkdir(parents=True, exist_ok=True)
    upstream_ran = False
    for i, step in enumerate(steps, 1):
        marker = markers / f"{step.name}.done"
        header = f"[{i}/{len(steps)}] {step.title}"
        done_before = marker.read_text() if marker.is_file() else None
        if not (force or upstream_ran) and done_before == step.fingerprint():
            print(f"{header}: done before, reusing ({marker})", flush=True)
            continue
        if force or upstream_ran or done_before is not None:  # inputs changed: start afresh
            for path in step.outputs:
                shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)
        upstream_ran = True  # everything after a step that ran is redone too: its inputs changed
        marker.unlink(missing_ok=True)
        print(f"\n{header}", flush=True)
        start, cpu_start = time.time(), _children_cpu()
        log_path = logs / f"{step.name}.log"
        with log_path.open("w") as log:
            for cmd in step.commands:
                code = _run_logged(cmd, log, step.env, cwd)
                if code != 0:
                    raise StepFailed(
                        f"step '{step.name}' ({step.title}) failed with exit code {code} running:\n"
                        f"  {shlex.join(cmd)}\nits full output is in {log_path}"
                    )
        marker.write_text(step.fingerprint())
        print(f"{header}: finished in {time.time() - start:.1f} s (CPU {_children_cpu() - cpu_start:.1f} s)", flush=True)
