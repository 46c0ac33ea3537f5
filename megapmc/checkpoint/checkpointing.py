"""Whole training checkpoints: model shards, optimizer shards, run state, the ``latest`` tracker.

Layout (docs/architecture.md)::

    SAVE/latest_checkpointed_iteration.txt       "10", replaced atomically after the directory is complete
    SAVE/iter_0000010/config.json                resolved run configuration
    SAVE/iter_0000010/model_tp00.safetensors     per TP rank, written by DP rank 0
    SAVE/iter_0000010/optim_tp00_dp00.safetensors  optimizer shard (per DP rank with the distributed
                                                 optimizer, else DP rank 0's copy only)
    SAVE/iter_0000010/state_tp00_dp00.json       per rank: iteration, consumed samples, scheduler,
                                                 RNG states, skipped-step counters

With pipeline parallelism every file name carries the stage, ``_ppYYY`` after ``tpXX``; each stage
writes its parameters (and their optimizer states) under the one-process names, so the stages' files
are disjoint parts of the PP = 1 ones (``model_io``). A run at another PP size reads them merged.

Crash safety: every rank writes into ``iter_XXXXXXX.tmp``; after a barrier rank 0 renames it to
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
import torch.distributed as dist
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from megapmc.checkpoint.model_io import (
    CONFIG_NAME,
    load_config,
    load_model_shard,
    pipeline_parallel_size,
    save_config,
    save_model_shard,
    tensor_parallel_size,
)
from megapmc.parallel.state import ParallelState

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


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be used for this run; the message says why and what to do."""


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


def read_tracker(save_dir: str | Path) -> int | None:
    """The iteration named by ``latest_checkpointed_iteration.txt``, or None when there is none."""
    path = Path(save_dir) / TRACKER_NAME
    if not path.is_file():
        return None
    text = path.read_text().strip()
    if not text.isdigit():
        raise CheckpointError(
            f"{path}: expected an iteration number, found {text[:40]!r}; fix or delete the file "
            f"(the checkpoint directories iter_XXXXXXX beside it are untouched)"
        )
    return int(text)


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def resolve_checkpoint_dir(load: str | Path) -> Path | None:
    """``load`` is a run directory (its tracker names the checkpoint) or one checkpoint directory.
    None: a run directory without a tracker (nothing saved yet)."""
    load = Path(load)
    if (load / CONFIG_NAME).is_file():
        return load
    iteration = read_tracker(load)
    if iteration is None:
        if not load.is_dir():
            raise CheckpointError(f"--load {load}: no such directory")
        return None
    ckpt = load / iteration_dir_name(iteration)
    if not ckpt.is_dir():
        raise CheckpointError(
            f"{load / TRACKER_NAME} names iteration {iteration} but {ckpt} does not exist; point the tracker "
            f"at an existing iter_XXXXXXX directory"
        )
    return ckpt


# ------------------------------------------------------------------------------------------- save


def _barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


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
) -> Path:
    """Write ``iter_XXXXXXX`` collectively (every rank calls this) and point the tracker at it.

    ``optimizer_is_sharded``: each DP rank holds a different optimizer shard (distributed optimizer);
    otherwise DP ranks hold copies and only DP rank 0 writes one. ``run_state`` is JSON-ready
    (iteration, consumed samples, scheduler, counters); the RNG states are added here.
    """
    save_dir = Path(save_dir)
    final = save_dir / iteration_dir_name(iteration)
    tmp = final.with_name(final.name + ".tmp")
    if parallel.rank == 0:
        save_dir.mkdir(parents=True, exist_ok=True)
        for stale in save_dir.glob("iter_*.tmp"):  # left by a run killed while saving
            shutil.rmtree(stale)
        tmp.mkdir()
    _barrier()

    tp, dp, pp = parallel.tp_rank, parallel.dp_rank, _pp_rank(parallel)
    written = []
    if dp == 0:
        written.append(save_model_shard(tmp, tp, model_state, pp))
    if optimizer_is_sharded or dp == 0:
        path = tmp / optimizer_shard_name(tp, dp, pp)
        save_file({k: v.detach().contiguous().cpu() for k, v in optimizer_state.items()}, str(path))
        written.append(path)
    state = {
        **run_state,
        "rng": get_rng_state(),
        "tp_rank": tp, "dp_rank": dp, "tp_size": parallel.tp_size, "dp_size": parallel.dp_size,
        **({"pp_rank": pp, "pp_size": parallel.pp_size} if pp is not None else {}),
    }
    state_path = tmp / state_name(tp, dp, pp)
    state_path.write_text(json.dumps(state))
    written.append(state_path)
    for path in written:  # durable before the rename publishes them
        _fsync_file(path)
    _barrier()

    if parallel.rank == 0:
        config = {**config, "parallel": {**config.get("parallel", {}),
                                         "tensor_model_parallel_size": parallel.tp_size,
                                         "data_parallel_size": parallel.dp_size,
                                         "optimizer_is_sharded": optimizer_is_sharded,
                                         **({"pipeline_model_parallel_size": parallel.pp_size}
                                            if parallel.pp_size > 1 else {})}}
        save_config(tmp, config)
        _fsync_file(tmp / CONFIG_NAME)
        _fsync_dir(tmp)
        if final.exists():  # saving an iteration again (e.g. a run restarted from an older --load)
            old = final.with_name(final.name + ".old")
            shutil.rmtree(old, ignore_errors=True)
            os.rename(final, old)
            os.rename(tmp, final)
            shutil.rmtree(old)
        else:
            os.rename(tmp, final)
        _fsync_dir(save_dir)
        _write_atomic(save_dir / TRACKER_NAME, f"{iteration}\n")
        if keep_last is not None:
            prune_checkpoints(save_dir, keep_last, protect=iteration)
    _barrier()
    return final


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
            f"{path} holds a model of another shape than this run's:\n  " + "\n  ".join(diffs)
            + "\nchoose the --model preset / overrides (and --tokenizer-model) the checkpoint was trained with"
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
    multiple = model["make_vocab_size_divisible_by"] * tp
    return -(-model["vocab_size"] // multiple) * multiple


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
        raise CheckpointError(f"{path}: tensors do not fit the model: " + ", ".join(parts))


def load_checkpoint(
    ckpt_dir: str | Path,
    parallel: ParallelState,
    model_config: dict,
    expected_model_state: dict[str, torch.Tensor],
    load_optimizer: bool = True,
    load_run_state: bool = True,
    optimizer_layout: dict[str, tuple[int, int, int]] | None = None,
) -> LoadedCheckpoint:
    """Read this rank's part of ``ckpt_dir`` after checking that it fits the model and TP size.
    ``optimizer_layout``: see ``read_optimizer_state``."""
    ckpt_dir = Path(ckpt_dir)
    saved = load_config(ckpt_dir)
    check_compatible(saved, model_config, parallel.tp_size, ckpt_dir)
    # With pipelining (now or when saved) this rank reads its stage's tensors, whichever files hold them.
    piped = parallel.pp_size > 1 or pipeline_parallel_size(saved) > 1
    model_state = load_model_shard(ckpt_dir, parallel.tp_rank, set(expected_model_state) if piped else None)
    _check_tensor_shapes(model_state, expected_model_state, ckpt_dir / f"model_tp{parallel.tp_rank:02d}")

    optimizer_state = run_state = None
    if load_run_state:
        run_state = _read_run_state(ckpt_dir, parallel, saved)
    if load_optimizer:
        optimizer_state = read_optimizer_state(ckpt_dir, parallel, saved, optimizer_layout)
    return LoadedCheckpoint(ckpt_dir, saved, model_state, optimizer_state, run_state)


def _read_run_state(ckpt_dir: Path, parallel: ParallelState, saved: dict) -> dict:
    pp = pipeline_parallel_size(saved)
    # The same stage when the PP size is unchanged; else stage 0's (the counters and scheduler are the same
    # on every stage, and the RNG draws nothing per stage).
    stage = None if pp == 1 else parallel.pp_rank if pp == parallel.pp_size else 0
    path = ckpt_dir / state_name(parallel.tp_rank, parallel.dp_rank, stage)
    if not path.is_file():
        fallback = ckpt_dir / state_name(parallel.tp_rank, 0, stage)
        if not fallback.is_file():
            raise CheckpointError(
                f"{path} is missing: {ckpt_dir} holds no training state (a converted checkpoint?); "
                f"start from its weights with --pretrained-checkpoint {ckpt_dir} or --finetune"
            )
        path = fallback  # more DP ranks than when saved: they share DP rank 0's RNG and counters
    return json.loads(path.read_text())


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
    saved_dp, saved_pp = saved_data_parallel_size(saved), pipeline_parallel_size(saved)
    if saved_pp == parallel.pp_size:
        stages = [None if saved_pp == 1 else parallel.pp_rank]
    else:  # another pipeline split: read every stage's shards, keep this stage's parameters (below)
        stages = [None] if saved_pp == 1 else list(range(saved_pp))
    sources = [ckpt_dir / optimizer_shard_name(parallel.tp_rank, r, stage) for stage in stages
               for r in range(saved_dp)]
    missing = [p for p in sources if not p.is_file()]
    if missing:
        raise CheckpointError(
            f"{missing[0]} is missing; {ckpt_dir} holds no optimizer states for this rank. Pass --no-load-optim "
            f"to start the optimizer afresh, or --pretrained-checkpoint/--finetune to load weights only"
        )
    own = None
    if len(stages) == 1:
        own = sources[parallel.dp_rank] if saved_dp == parallel.dp_size else sources[0] if saved_dp == 1 else None
    if own is not None and _covers_exactly(own, layout):
        return load_file(str(own))
    pieces = []
    for path in sources:
        with safe_open(str(path), framework="pt") as f:
            pieces.append({k: f.get_tensor(k) for k in f.keys()
                           if layout is None or k.rpartition(".")[0] in layout})
    try:
        return merge_sharded_state_dicts(pieces)
    except ValueError as e:
        raise CheckpointError(
            f"{ckpt_dir}: cannot merge the optimizer shards of its {saved_dp} data-parallel ranks "
            f"(tensor-parallel rank {parallel.tp_rank}): {e}. Pass --no-load-optim to start the optimizer "
            f"afresh from these weights"
        ) from e


def _covers_exactly(path: Path, layout: dict[str, tuple[int, int, int]] | None) -> bool:
    """Whether the shard at ``path`` holds the parameters of ``layout``, each over the same elements (or
    over all of them: a non-sharded optimizer's file, which every layout can take its part of)."""
    if layout is None:
        return True
    with safe_open(str(path), framework="pt") as f:
        ranges = {k[: -len(".range")]: f.get_tensor(k).tolist() for k in f.keys() if k.endswith(".range")}
    if ranges.keys() != layout.keys():
        return False
    return all(saved in (list(layout[name]), [0, saved[2], saved[2]]) for name, saved in ranges.items())
