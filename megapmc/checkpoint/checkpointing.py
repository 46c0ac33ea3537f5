"""Whole training checkpoints: model shards, optimizer shards, run state, the ``latest`` tracker.

Layout (docs/architecture.md)::

    SAVE/latest_checkpointed_iteration.txt       "10", replaced atomically after the directory is complete
    SAVE/iter_0000010/config.json                resolved run configuration
    SAVE/iter_0000010/model_tp00.safetensors     per TP rank, written by DP rank 0
    SAVE/iter_0000010/optim_tp00_dp00.safetensors  optimizer shard (per DP rank with the distributed
                                                 optimizer, else DP rank 0's copy only)
    SAVE/iter_0000010/state_tp00_dp00.json       per rank: iteration, run id, consumed samples, scheduler,
                                                 RNG states, skipped-step counters
    SAVE/iter_0000010/manifest.json              iteration, run id, size and xxh3_64 of every file above
                                                 (integrity.py), written last

With pipeline parallelism every file name carries the stage, ``_ppYYY`` after ``tpXX``; each stage
writes its parameters (and their optimizer states) under the one-process names, so the stages' files
are disjoint parts of the PP = 1 ones (``model_io``). A run at another PP size reads them merged.

Crash safety: every rank writes into ``iter_XXXXXXX.tmp``; once every rank's files are complete (their
checksums gathered to rank 0) rank 0 writes the manifest, renames the directory to
``iter_XXXXXXX`` and only then replaces the tracker, so a kill at any moment leaves the tracker pointing
at a complete checkpoint. Multi-node runs need ``SAVE`` on a filesystem every node sees (as Megatron).
Nothing here unpickles: only safetensors and JSON are read.
"""
from __future__ import annotations

import json
import os
import random
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from megapmc.checkpoint.errors import CheckpointDamaged, CheckpointError
from megapmc.checkpoint.integrity import (
    MANIFEST_NAME,
    VerifyReport,
    describe_file,
    read_json,
    read_manifest,
    verify_files,
    write_manifest,
)
from megapmc.checkpoint.model_io import (
    CONFIG_NAME,
    FORMAT_VERSION,
    load_model_shard,
    model_shard_name,
    pipeline_parallel_size,
    save_config,
    save_model_shard,
    tensor_parallel_size,
)
from megapmc.model.config import padded_vocab_size
from megapmc.parallel.state import ParallelState
from megapmc.utils.io import fsync_dir, fsync_file, write_text_atomic

__all__ = ["CheckpointDamaged", "CheckpointError"]  # raised below; defined in errors.py, re-exported here

TRACKER_NAME = "latest_checkpointed_iteration.txt"
# Fields that fix the parameter shapes: a checkpoint with other values cannot be loaded into this model.
# The padded vocabulary is compared too: it, not make_vocab_size_divisible_by, sets the embedding rows.
SHAPE_FIELDS = (
    "num_layers", "hidden_size", "num_attention_heads", "num_key_value_heads", "ffn_hidden_size", "vocab_size",
)
RESHARD_HINT = (
    "reshard its weights with `python tools/convert_checkpoint.py --loader megapmc --saver megapmc --load-dir {src} "
    "--save-dir NEW_DIR --target-tensor-parallel-size {tp}` and start from NEW_DIR with --pretrained-checkpoint "
    "(the conversion carries the model weights only: optimizer states, iteration and data position start "
    "afresh). Another data-parallel size needs none of this: the optimizer shards are merged on load"
)

# How the trainer's user picks a checkpoint when the tracker cannot (the converter names its own flag).
CHOOSE_WITH_TRAINER_FLAGS = ("resume one with --ckpt-step N, or the newest intact one with "
                             "--fallback-to-intact-checkpoint (nothing is deleted)")

# What every state_tpXX_dpYY.json holds at least (the trainer adds its own counters and checks those).
RUN_STATE_KEYS = ("iteration", "consumed_samples")


def iteration_dir_name(iteration: int) -> str:
    return f"iter_{iteration:07d}"


def _stage(pp_rank: int | None) -> str:
    return "" if pp_rank is None else f"_pp{pp_rank:03d}"


def optimizer_shard_name(tp_rank: int, dp_rank: int, pp_rank: int | None = None) -> str:
    return f"optim_tp{tp_rank:02d}{_stage(pp_rank)}_dp{dp_rank:02d}.safetensors"


def state_name(tp_rank: int, dp_rank: int, pp_rank: int | None = None) -> str:
    return f"state_tp{tp_rank:02d}{_stage(pp_rank)}_dp{dp_rank:02d}.json"


def _pp_rank(parallel: ParallelState) -> int | None:
    """The stage in this rank's file names: ``None`` without pipelining (the PP = 1 names)."""
    return parallel.pp_rank if parallel.pp_size > 1 else None


# ---------------------------------------------------------------------------------------------- RNG


def get_rng_state() -> dict:
    """Every generator the loop draws from, as JSON-ready lists."""
    np_state = np.random.get_state()
    version, mt, gauss = random.getstate()
    state = {
        "python": [version, list(mt), gauss],
        "numpy": [np_state[0], np_state[1].tolist(), int(np_state[2]), int(np_state[3]), float(np_state[4])],
        "torch_cpu": torch.get_rng_state().tolist(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["torch_cuda"] = [s.tolist() for s in torch.cuda.get_rng_state_all()]
    return state


def set_rng_state(state: dict) -> None:
    version, mt, gauss = state["python"]
    random.setstate((version, tuple(mt), gauss))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(torch.tensor(state["torch_cpu"], dtype=torch.uint8))
    if "torch_cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([torch.tensor(s, dtype=torch.uint8) for s in state["torch_cuda"]])


# ---------------------------------------------------------------------------------------- tracker


def read_tracker(save_dir: str | Path, choose: str = CHOOSE_WITH_TRAINER_FLAGS) -> int | None:
    """The iteration named by ``latest_checkpointed_iteration.txt``, or None when there is none.
    ``choose``: the advice an error ends with, after the list of checkpoints present."""
    path = Path(save_dir) / TRACKER_NAME
    if not path.is_file():
        return None
    try:
        text = path.read_text().strip()
    except (OSError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{path}: unreadable ({e}); {_tracker_advice(path.parent, choose)}") from None
    if not text.isdigit():
        raise CheckpointError(f"{path}: expected an iteration number, found {text[:40]!r}; "
                              f"{_tracker_advice(path.parent, choose)}")
    return int(text)


def iteration_dirs(run_dir: str | Path) -> list[tuple[int, Path]]:
    """The published ``iter_XXXXXXX`` directories of a run directory, newest first (``.tmp``/``.old`` are
    unfinished saves, not checkpoints)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return []
    found = [(int(p.name[5:]), p) for p in run_dir.glob("iter_*") if p.is_dir() and p.name[5:].isdigit()]
    return sorted(found, reverse=True)


def _tracker_advice(run_dir: Path, choose: str = CHOOSE_WITH_TRAINER_FLAGS) -> str:
    names = [p.name for _, p in iteration_dirs(run_dir)]
    listed = ", ".join(names[:8]) + (" ..." if len(names) > 8 else "") if names else "none"
    return f"checkpoints present: {listed}; {choose}"


def resolve_checkpoint_dir(load: str | Path, ckpt_step: int | None = None, fallback: bool = False,
                           choose: str = CHOOSE_WITH_TRAINER_FLAGS) -> Path | None:
    """``load`` is a run directory (its tracker, or ``ckpt_step``, names the checkpoint) or one checkpoint
    directory. None: a run directory with nothing saved yet (no tracker and no ``iter_*`` directory).

    A tracker that is missing, unreadable or names a missing directory while ``iter_*`` directories exist is
    an error listing them, never a fresh start that would overwrite them; ``fallback`` takes the newest
    directory instead (``load_for_resume`` then verifies it, and older ones if it is damaged). ``choose``:
    how the user picks one instead, ending those errors (the trainer's flags by default)."""
    load = Path(load)
    if (load / CONFIG_NAME).is_file():
        return load
    if not load.is_dir():
        raise CheckpointError(f"--load {load}: no such directory")
    present = iteration_dirs(load)
    if ckpt_step is not None:
        ckpt = load / iteration_dir_name(ckpt_step)
        if not ckpt.is_dir():
            raise CheckpointError(f"--ckpt-step {ckpt_step}: {ckpt} does not exist; {_tracker_advice(load, choose)}")
        return ckpt
    try:
        iteration = read_tracker(load, choose)
    except CheckpointError:
        if fallback and present:
            return present[0][1]
        raise
    if iteration is None:
        if not present:
            return None
        if fallback:
            return present[0][1]
        raise CheckpointError(f"{load / TRACKER_NAME} is missing but {load} holds checkpoints; "
                              f"{_tracker_advice(load, choose)}")
    ckpt = load / iteration_dir_name(iteration)
    if not ckpt.is_dir():
        if fallback and present:
            return present[0][1]
        raise CheckpointError(f"{load / TRACKER_NAME} names iteration {iteration} but {ckpt} does not exist; "
                              f"{_tracker_advice(load, choose)}")
    return ckpt


# ------------------------------------------------------------------------------------------- save


def agree(parallel: ParallelState, error: CheckpointError | None, payload=None) -> list:
    """One world all-gather of (error, payload): every rank raises the first failing rank's error (same
    class, message prefixed by that rank), so a failure on one rank is an error on all of them instead of
    a hang in the next collective. Returns every rank's payload, in rank order."""
    gathered = parallel.all_gather_object((None if error is None else (type(error), str(error)), payload))
    failed = [(r, e) for r, (e, _) in enumerate(gathered) if e is not None]
    if failed:
        rank, (cls, message) = failed[0]
        if error is not None and rank == parallel.rank:
            raise error
        raise cls(message if parallel.world_size == 1 else f"(rank {rank}) {message}")
    return [p for _, p in gathered]


def _save_tensors(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> Path:
    save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(path), metadata=metadata)
    return path


def save_checkpoint(
    save_dir: str | Path,
    iteration: int,
    parallel: ParallelState,
    config: dict,
    model_state: dict[str, torch.Tensor],
    optimizer_state: dict[str, torch.Tensor],
    optimizer_is_sharded: bool,
    run_state: dict,
    keep_last: int | None = None,
    run_id: str = "",
) -> Path:
    """Write ``iter_XXXXXXX`` collectively (every rank calls this) and point the tracker at it.

    ``optimizer_is_sharded``: each DP rank holds a different optimizer shard (distributed optimizer);
    otherwise DP ranks hold copies and only DP rank 0 writes one. ``run_state`` is JSON-ready
    (iteration, consumed samples, scheduler, counters); the RNG states and ``run_id`` (the same on every
    rank, kept across resumes) are added here. Every file's size and checksum go into ``manifest.json``.
    """
    save_dir = Path(save_dir)
    final = save_dir / iteration_dir_name(iteration)
    tmp = final.with_name(final.name + ".tmp")
    error = None
    if parallel.rank == 0:
        try:
            save_dir.mkdir(parents=True, exist_ok=True)
            for stale in save_dir.glob("iter_*.tmp"):  # left by a run killed while saving
                shutil.rmtree(stale)
            tmp.mkdir()
        except OSError as e:
            error = CheckpointError(f"{tmp}: cannot create the checkpoint directory ({e}); check --save and "
                                    f"the free space")
    agree(parallel, error)

    tp, dp, pp = parallel.tp_rank, parallel.dp_rank, _pp_rank(parallel)
    meta = {"iteration": str(iteration), "run_id": run_id}
    error, described = None, {}
    try:
        written = []
        if dp == 0:
            written.append(save_model_shard(tmp, tp, model_state, pp, metadata=meta))
        if optimizer_is_sharded or dp == 0:
            written.append(_save_tensors(tmp / optimizer_shard_name(tp, dp, pp), optimizer_state, meta))
        state = {
            **run_state, "run_id": run_id,
            "rng": get_rng_state(),
            "tp_rank": tp, "dp_rank": dp, "tp_size": parallel.tp_size, "dp_size": parallel.dp_size,
            **({"pp_rank": pp, "pp_size": parallel.pp_size} if pp is not None else {}),
        }
        state_path = tmp / state_name(tp, dp, pp)
        write_text_atomic(state_path, json.dumps(state), durable=True)
        written.append(state_path)
        for path in written:  # durable before the rename publishes them
            fsync_file(path)
            described[path.name] = describe_file(path)
    except OSError as e:
        error = CheckpointError(f"{tmp}: writing rank {parallel.rank}'s files failed ({e}); check the free "
                                f"space of --save")
    files = {name: entry for part in agree(parallel, error, described) for name, entry in part.items()}

    error = None
    if parallel.rank == 0:
        try:
            _publish(save_dir, tmp, final, iteration, run_id, files, parallel, config, optimizer_is_sharded)
            if keep_last is not None:
                prune_checkpoints(save_dir, keep_last, protect=iteration)
        except OSError as e:
            error = CheckpointError(f"{final}: publishing the checkpoint failed ({e}); the previous checkpoint "
                                    f"is untouched")
    agree(parallel, error)
    return final


def _publish(save_dir: Path, tmp: Path, final: Path, iteration: int, run_id: str, files: dict,
             parallel: ParallelState, config: dict, optimizer_is_sharded: bool) -> None:
    """Rank 0, once every rank's files are durable: config, manifest, rename, tracker (in that order, so a
    kill at any point leaves the tracker on a complete, verifiable checkpoint)."""
    config = {**config, "run_id": run_id,
              "parallel": {**config.get("parallel", {}), "tensor_model_parallel_size": parallel.tp_size,
                           "data_parallel_size": parallel.dp_size, "optimizer_is_sharded": optimizer_is_sharded,
                           **({"pipeline_model_parallel_size": parallel.pp_size} if parallel.pp_size > 1 else {})}}
    save_config(tmp, config)
    fsync_file(tmp / CONFIG_NAME)
    files[CONFIG_NAME] = describe_file(tmp / CONFIG_NAME)
    write_manifest(tmp, iteration, run_id, files)
    fsync_dir(tmp)
    if final.exists():  # saving an iteration again (e.g. a run restarted from an older --load)
        old = final.with_name(final.name + ".old")
        shutil.rmtree(old, ignore_errors=True)
        os.rename(final, old)
        os.rename(tmp, final)
        shutil.rmtree(old)
    else:
        os.rename(tmp, final)
    fsync_dir(save_dir)
    write_text_atomic(save_dir / TRACKER_NAME, f"{iteration}\n", durable=True)


def prune_checkpoints(save_dir: Path, keep_last: int, protect: int) -> list[Path]:
    """Delete all but the newest ``keep_last`` complete checkpoints (never ``protect``)."""
    complete = sorted(
        p for p in save_dir.glob("iter_*") if p.is_dir() and p.name[5:].isdigit() and (p / CONFIG_NAME).is_file()
    )
    removed = []
    for path in complete[:-keep_last]:
        if int(path.name[5:]) != protect:
            shutil.rmtree(path)
            removed.append(path)
    return removed


# ------------------------------------------------------------------------------------------- load


@dataclass
class LoadedCheckpoint:
    path: Path
    config: dict
    model_state: dict[str, torch.Tensor]
    optimizer_state: dict[str, torch.Tensor] | None  # None when not asked for
    run_state: dict | None  # None when not asked for (weights only)
    verified: VerifyReport | None = None  # None: not verified (no manifest, or --verify-checkpoint off)


def load_saved_config(ckpt_dir: Path) -> dict:
    """``config.json`` with a one-line CheckpointError for every way it can be unusable."""
    path = ckpt_dir / CONFIG_NAME
    if not path.is_file():
        raise CheckpointDamaged(f"{path}: missing; {ckpt_dir} is not a megapmc checkpoint directory (or is incomplete)")
    config = read_json(path, "the run configuration")
    if config.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"{path}: format_version {config.get('format_version')!r} is not {FORMAT_VERSION}, "
                              f"the version this megapmc reads")
    if not isinstance(config.get("model"), dict):
        raise CheckpointDamaged(f"{path}: no \"model\" section; the file is damaged or not a megapmc config")
    return config


def check_compatible(saved: dict, model_config: dict, tensor_model_parallel_size: int, path: Path) -> None:
    """Raise CheckpointError naming every shape field that differs, or the TP size and the reshard command."""
    saved_model = saved.get("model", {})
    diffs = [
        f"{name}: checkpoint {saved_model.get(name)}, this run {model_config.get(name)}"
        for name in SHAPE_FIELDS
        if saved_model.get(name) != model_config.get(name)
    ]
    if not diffs:
        padded = [_padded_vocab(m, tensor_model_parallel_size) for m in (saved_model, model_config)]
        if padded[0] != padded[1]:
            diffs.append(f"padded vocabulary (make_vocab_size_divisible_by x TP): checkpoint {padded[0]}, "
                         f"this run {padded[1]}; set --make-vocab-size-divisible-by "
                         f"{saved_model.get('make_vocab_size_divisible_by')}")
    if diffs:
        raise CheckpointError(
            f"{path} holds a model of another shape than this run's ({'; '.join(diffs)}); choose the --model "
            f"preset / overrides (and --tokenizer-model) the checkpoint was trained with"
        )
    saved_tp = tensor_parallel_size(saved)
    if saved_tp != tensor_model_parallel_size:
        raise CheckpointError(
            f"{path} was saved with --tensor-model-parallel-size {saved_tp}, this run uses "
            f"{tensor_model_parallel_size}; run with {saved_tp}, or "
            + RESHARD_HINT.format(src=path, tp=tensor_model_parallel_size)
        )


def _padded_vocab(model: dict, tp: int) -> int | None:
    if model.get("vocab_size") is None or model.get("make_vocab_size_divisible_by") is None:
        return None
    return padded_vocab_size(model["vocab_size"], model["make_vocab_size_divisible_by"], tp)


def _check_tensor_shapes(loaded: dict[str, torch.Tensor], expected: dict[str, torch.Tensor], path: Path) -> None:
    missing = sorted(set(expected) - set(loaded))
    unexpected = sorted(set(loaded) - set(expected))
    wrong = [
        f"{k}: checkpoint {tuple(loaded[k].shape)}, model {tuple(expected[k].shape)}"
        for k in sorted(set(loaded) & set(expected))
        if loaded[k].shape != expected[k].shape
    ]
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"missing {missing[:5]}{' ...' if len(missing) > 5 else ''}")
        if unexpected:
            parts.append(f"unexpected {unexpected[:5]}{' ...' if len(unexpected) > 5 else ''}")
        if wrong:
            parts.append("shape mismatch " + "; ".join(wrong[:5]))
        raise CheckpointError(f"{path}: tensors do not fit the model: " + ", ".join(parts)
                              + "; the checkpoint belongs to another model or was edited")


def read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    """All tensors of a safetensors file, with a one-line CheckpointError when it is missing or damaged."""
    if not path.is_file():
        raise CheckpointDamaged(f"{path}: missing; the checkpoint is incomplete")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise CheckpointDamaged(f"{path}: damaged safetensors file ({reason}); resume an older checkpoint "
                                f"(--ckpt-step N or --fallback-to-intact-checkpoint)") from None


def rank_files(saved: dict, parallel: ParallelState, load_optimizer: bool, load_run_state: bool) -> list[str]:
    """The files of a checkpoint that this rank reads (and so verifies)."""
    names = [CONFIG_NAME] + [model_shard_name(parallel.tp_rank, stage) for stage in _saved_stages(saved, parallel)]
    if load_run_state:
        names.append(_run_state_name(saved, parallel))
    if load_optimizer:
        sources, own = _optimizer_shard_names(saved, parallel)
        names += [own] if own is not None else sources
    return names


def _saved_stages(saved: dict, parallel: ParallelState) -> list[int | None]:
    """The saved stages whose files hold this rank's tensors: its own stage at the same PP size, every
    stage at another (each is read for this stage's names only), ``[None]`` for an unpipelined save."""
    saved_pp = pipeline_parallel_size(saved)
    if saved_pp == 1:
        return [None]
    return [parallel.pp_rank] if saved_pp == parallel.pp_size else list(range(saved_pp))


def verify_checkpoint(ckpt_dir: Path, saved: dict, parallel: ParallelState, mode: str,
                      load_optimizer: bool, load_run_state: bool) -> VerifyReport | None:
    """Check this rank's files against ``manifest.json`` (``integrity.verify_files``). A checkpoint without
    a manifest (converted by tools/convert_checkpoint.py, which records none) is read unverified when only
    its weights are wanted; resuming one is refused, since its training state cannot be trusted."""
    if mode == "off":
        return None
    if not (ckpt_dir / MANIFEST_NAME).exists():
        if load_run_state:
            raise CheckpointDamaged(f"{ckpt_dir / MANIFEST_NAME}: missing, so the checkpoint's files cannot be "
                                    f"verified (an unfinished or foreign checkpoint); resume another one, or pass "
                                  f"--verify-checkpoint off to trust it as is")
        return None
    names = rank_files(saved, parallel, load_optimizer, load_run_state)
    return verify_files(ckpt_dir, names, mode, read_manifest(ckpt_dir))


def load_checkpoint(
    ckpt_dir: str | Path,
    parallel: ParallelState,
    model_config: dict,
    expected_model_state: dict[str, torch.Tensor],
    load_optimizer: bool = True,
    load_run_state: bool = True,
    optimizer_layout: dict[str, tuple[int, int, int]] | None = None,
    verify: str = "full",
    verify_optimizer: bool | None = None,
) -> LoadedCheckpoint:
    """Read this rank's part of ``ckpt_dir`` after verifying its files (``verify``: full, metadata or off)
    and checking that it fits the model and TP size. ``optimizer_layout``: see ``read_optimizer_state``;
    ``verify_optimizer``: verify the optimizer shards now although they are read later (default:
    ``load_optimizer``). Raises CheckpointError (one line, naming the file) on this rank only: callers
    on several ranks agree on errors with one collective (``resume.load_for_resume``)."""
    ckpt_dir = Path(ckpt_dir)
    saved = load_saved_config(ckpt_dir)
    check_compatible(saved, model_config, parallel.tp_size, ckpt_dir)
    verified = verify_checkpoint(ckpt_dir, saved, parallel, verify,
                                 load_optimizer if verify_optimizer is None else verify_optimizer, load_run_state)
    stages = _saved_stages(saved, parallel)
    if stages == [None] and parallel.pp_size == 1:
        shard = ckpt_dir / model_shard_name(parallel.tp_rank)
        model_state = read_safetensors(shard)
    else:  # pipelined now or when saved: this rank reads its stage's tensors, whichever files hold them
        shard = ckpt_dir / f"model_tp{parallel.tp_rank:02d}"
        try:
            model_state = load_model_shard(ckpt_dir, parallel.tp_rank, set(expected_model_state))
        except SafetensorError as e:
            raise CheckpointDamaged(f"{shard}*.safetensors: unreadable ({e}); resume an intact checkpoint "
                                    f"(--fallback-to-intact-checkpoint)") from None
    _check_tensor_shapes(model_state, expected_model_state, shard)

    optimizer_state = run_state = None
    if load_run_state:
        run_state = _read_run_state(ckpt_dir, parallel, saved)
    if load_optimizer:
        optimizer_state = read_optimizer_state(ckpt_dir, parallel, saved, optimizer_layout)
    return LoadedCheckpoint(ckpt_dir, saved, model_state, optimizer_state, run_state, verified)


def _run_state_name(saved: dict, parallel: ParallelState) -> str:
    """This rank's state file; with more DP ranks than when saved, the extra ones share DP rank 0's RNG
    and counters."""
    saved_dp = saved.get("parallel", {}).get("data_parallel_size", 1)
    # The same stage at an unchanged PP size; else stage 0's (counters and scheduler are the same on every
    # stage, and the RNG draws nothing per stage).
    saved_pp = pipeline_parallel_size(saved)
    stage = None if saved_pp == 1 else parallel.pp_rank if saved_pp == parallel.pp_size else 0
    return state_name(parallel.tp_rank, parallel.dp_rank if parallel.dp_rank < saved_dp else 0, stage)


def run_state_path(ckpt_dir: Path, parallel: ParallelState, saved: dict) -> Path:
    return ckpt_dir / _run_state_name(saved, parallel)


def _read_run_state(ckpt_dir: Path, parallel: ParallelState, saved: dict) -> dict:
    path = ckpt_dir / _run_state_name(saved, parallel)
    if not path.is_file():
        raise CheckpointError(
            f"{path} is missing: {ckpt_dir} holds no training state (a converted checkpoint?); "
            f"start from its weights with --pretrained-checkpoint {ckpt_dir} or --finetune"
        )
    state = read_json(path, "training state")
    missing = [k for k in RUN_STATE_KEYS if k not in state]
    if missing:
        raise CheckpointDamaged(f"{path}: missing {', '.join(missing)}; the file is damaged or was edited")
    name = ckpt_dir.name
    if name.startswith("iter_") and name[5:].isdigit() and state["iteration"] != int(name[5:]):
        raise CheckpointDamaged(f"{path}: records iteration {state['iteration']}, the directory is named for "
                                f"{int(name[5:])}; a state file from another checkpoint was copied in")
    return state


def saved_data_parallel_size(saved: dict) -> int:
    """Over how many DP ranks the checkpoint's optimizer states were sharded (1: not sharded)."""
    parallel = saved.get("parallel", {})
    return parallel.get("data_parallel_size", 1) if parallel.get("optimizer_is_sharded", False) else 1


def read_optimizer_state(
    ckpt_dir: str | Path,
    parallel: ParallelState,
    saved: dict,
    layout: dict[str, tuple[int, int, int]] | None = None,
) -> dict[str, torch.Tensor]:
    """This rank's optimizer state, for ``MixedPrecisionOptimizer.load_sharded_state_dict``.

    ``layout`` is ``{parameter name: (start, end, numel)}`` of the elements this rank's optimizer
    updates (``optimizer.shard_layout()``); None means every parameter. When the shard saved for this
    rank covers exactly that (same DP size, optimizer and buckets), it is read as is. Otherwise (another
    DP size, ZeRO-1 switched on or off, another --ddp-bucket-size) the shards of every DP rank of this
    TP rank are read, only the parameters in ``layout``, and merged into full per-parameter state
    (``merge_sharded_state_dicts``); the optimizer then takes the elements it owns. A different TP
    size is refused earlier, by ``check_compatible``.
    """
    from megapmc.optim.optimizer import merge_sharded_state_dicts

    ckpt_dir = Path(ckpt_dir)
    saved_dp = saved_data_parallel_size(saved)
    names, own_name = _optimizer_shard_names(saved, parallel)
    sources, own = [ckpt_dir / n for n in names], None if own_name is None else ckpt_dir / own_name
    missing = [p for p in sources if not p.is_file()]
    if missing:
        raise CheckpointError(
            f"{missing[0]} is missing; {ckpt_dir} holds no optimizer states for this rank. Pass --no-load-optim "
            f"to start the optimizer afresh, or --pretrained-checkpoint/--finetune to load weights only"
        )
    if own is not None and _covers_exactly(own, layout):
        return read_safetensors(own)
    pieces = []
    for path in sources:
        tensors = read_safetensors(path)
        pieces.append({k: v for k, v in tensors.items() if layout is None or k.rpartition(".")[0] in layout})
    try:
        return merge_sharded_state_dicts(pieces)
    except ValueError as e:
        raise CheckpointError(
            f"{ckpt_dir}: cannot merge the optimizer shards of its {saved_dp} data-parallel ranks "
            f"(tensor-parallel rank {parallel.tp_rank}): {e}. Pass --no-load-optim to start the optimizer "
            f"afresh from these weights"
        ) from e


def _optimizer_shard_names(saved: dict, parallel: ParallelState) -> tuple[list[str], str | None]:
    """The optimizer shard files that hold this rank's parameters (every saved DP rank of the saved stages
    concerned, merged by ``read_optimizer_state``), and the one saved for exactly this rank (same DP size or
    an unsharded save, same stage) when there is one."""
    saved_dp, stages = saved_data_parallel_size(saved), _saved_stages(saved, parallel)
    names = [optimizer_shard_name(parallel.tp_rank, r, stage) for stage in stages for r in range(saved_dp)]
    own_dp = parallel.dp_rank if saved_dp == parallel.dp_size else 0 if saved_dp == 1 else None
    if len(stages) != 1 or own_dp is None:
        return names, None
    return names, optimizer_shard_name(parallel.tp_rank, own_dp, stages[0])


def _covers_exactly(path: Path, layout: dict[str, tuple[int, int, int]] | None) -> bool:
    """Whether the shard at ``path`` holds the parameters of ``layout``, each over the same elements (or
    over all of them: a non-sharded optimizer's file, which every layout can take its part of)."""
    if layout is None:
        return True
    try:
        with safe_open(str(path), framework="pt") as f:
            ranges = {k[: -len(".range")]: f.get_tensor(k).tolist() for k in f.keys() if k.endswith(".range")}
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise CheckpointDamaged(f"{path}: damaged safetensors file ({reason}); resume an older checkpoint "
                                f"(--ckpt-step N or --fallback-to-intact-checkpoint)") from None
    if ranges.keys() != layout.keys():
        return False
    return all(saved in (list(layout[name]), [0, saved[2], saved[2]]) for name, saved in ranges.items())
