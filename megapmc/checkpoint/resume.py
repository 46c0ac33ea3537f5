"""Choosing and loading the checkpoint a run resumes from, on every rank at once.

Each step that can fail on one rank (verifying and reading its files) ends in one collective where the
ranks agree (``checkpointing.agree``): either every rank goes on, or every rank raises the same one-line
error. A damaged checkpoint names the newest intact one; with ``fallback`` that one is loaded instead.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import torch

from megapmc.checkpoint.checkpointing import (
    LoadedCheckpoint,
    agree,
    iteration_dirs,
    load_checkpoint,
    load_saved_config,
    verify_checkpoint,
)
from megapmc.checkpoint.errors import CheckpointDamaged, CheckpointError
from megapmc.parallel.state import ParallelState


def _older_checkpoints(ckpt_dir: Path) -> list[Path]:
    """The published checkpoints beside ``ckpt_dir`` (in its run directory) older than it, newest first."""
    name = ckpt_dir.name
    if not (name.startswith("iter_") and name[5:].isdigit()):
        return []
    return [p for it, p in iteration_dirs(ckpt_dir.parent) if it < int(name[5:])]


def _is_intact(ckpt_dir: Path, parallel: ParallelState, mode: str, load_optimizer: bool) -> bool:
    """Whether every rank's files of ``ckpt_dir`` verify (one collective)."""
    error = None
    try:
        saved = load_saved_config(ckpt_dir)
        verify_checkpoint(ckpt_dir, saved, parallel, "metadata" if mode == "off" else mode, load_optimizer, True)
    except CheckpointError as e:
        error = e
    try:
        agree(parallel, error)
    except CheckpointError:
        return False
    return True


def newest_intact(ckpt_dir: Path, parallel: ParallelState, mode: str, load_optimizer: bool) -> Path | None:
    for older in _older_checkpoints(ckpt_dir):
        if _is_intact(older, parallel, mode, load_optimizer):
            return older
    return None


def _intact_hint(ckpt_dir: Path, parallel: ParallelState, mode: str, load_optimizer: bool) -> str:
    older = newest_intact(ckpt_dir, parallel, mode, load_optimizer)
    if older is None:
        return f"no older intact checkpoint in {ckpt_dir.parent}"
    return (f"the newest intact checkpoint is {older.name}: resume it with --ckpt-step {int(older.name[5:])} "
            f"or --fallback-to-intact-checkpoint")


def load_for_resume(
    ckpt_dir: Path,
    parallel: ParallelState,
    model_config: dict,
    expected_model_state: dict[str, torch.Tensor],
    load_run_state: bool,
    load_optimizer_later: bool,
    verify: str = "full",
    fallback: bool = False,
    notify: Callable[[str], None] = print,
) -> LoadedCheckpoint:
    """Verify and read this rank's model shard (and run state) of ``ckpt_dir``, every rank together. The
    optimizer shards are verified now, read later (``read_optimizer_state``) once the optimizer exists.

    A damaged checkpoint (``CheckpointDamaged`` on any rank) is an error on every rank naming the newest
    intact older checkpoint; with ``fallback`` the older ones are tried, newest first. Other errors (another
    model shape or TP size) hold for every checkpoint of the run and are raised as they are."""
    candidates = [ckpt_dir] + (_older_checkpoints(ckpt_dir) if fallback else [])
    for i, candidate in enumerate(candidates):
        error, loaded = None, None
        try:
            loaded = load_checkpoint(candidate, parallel, model_config, expected_model_state,
                                     load_optimizer=False, load_run_state=load_run_state, verify=verify,
                                     verify_optimizer=load_optimizer_later)
        except CheckpointError as e:
            error = e
        try:
            agree(parallel, error)
        except CheckpointDamaged as e:
            if i + 1 < len(candidates):
                notify(f"warning: {e}; falling back to {candidates[i + 1]}")
                continue
            if fallback:
                raise CheckpointDamaged(f"{e}; no older intact checkpoint in {candidate.parent}") from None
            raise CheckpointDamaged(f"{e}; {_intact_hint(candidate, parallel, verify, load_optimizer_later)}") from None
        return loaded
    raise AssertionError("unreachable: the loop returns or raises")
