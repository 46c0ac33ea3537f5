"""Model shards of a megapmc checkpoint: ``model_tpXX.safetensors`` per TP rank and ``config.json``.

With pipeline parallelism each (TP, PP) rank writes ``model_tpXX_ppYYY.safetensors``, its stage's
tensors under the one-process names (``layers.{global number}``), so the stages' files of a TP rank
are disjoint parts of that rank's ``model_tpXX``: ``load_model_shard`` merges them, and conversion,
evaluation and a run at another PP size read a pipelined checkpoint like any other.

Only safetensors and JSON are read, so loading a checkpoint never unpickles code.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

FORMAT_VERSION = 1
CONFIG_NAME = "config.json"


def model_shard_name(tp_rank: int, pp_rank: int | None = None) -> str:
    """``model_tpXX`` (no pipelining) or ``model_tpXX_ppYYY`` (pipeline stage ``pp_rank``)."""
    stage = "" if pp_rank is None else f"_pp{pp_rank:03d}"
    return f"model_tp{tp_rank:02d}{stage}.safetensors"


def save_model_shard(ckpt_dir: str | Path, tp_rank: int, state_dict: dict[str, torch.Tensor],
                     pp_rank: int | None = None, metadata: dict[str, str] | None = None) -> Path:
    """``metadata``: strings for the safetensors header (the trainer records iteration and run id)."""
    path = Path(ckpt_dir) / model_shard_name(tp_rank, pp_rank)
    save_file({k: v.detach().contiguous().cpu() for k, v in state_dict.items()}, str(path), metadata=metadata)
    return path


def save_config(ckpt_dir: str | Path, config: dict) -> Path:
    path = Path(ckpt_dir) / CONFIG_NAME
    path.write_text(json.dumps({"format_version": FORMAT_VERSION, **config}, indent=2, sort_keys=True))
    return path


def load_config(ckpt_dir: str | Path) -> dict:
    path = Path(ckpt_dir) / CONFIG_NAME
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing; {ckpt_dir} is not a megapmc checkpoint directory")
    config = json.loads(path.read_text())
    if config.get("format_version") != FORMAT_VERSION:
        raise ValueError(
            f"{path}: format_version {config.get('format_version')} is not {FORMAT_VERSION}, "
            f"the version this megapmc reads"
        )
    return config


def tensor_parallel_size(config: dict) -> int:
    return int(config.get("parallel", {}).get("tensor_model_parallel_size", 1))


def pipeline_parallel_size(config: dict) -> int:
    return int(config.get("parallel", {}).get("pipeline_model_parallel_size", 1))


def load_model_shard(ckpt_dir: str | Path, tp_rank: int, names=None) -> dict[str, torch.Tensor]:
    """TP rank ``tp_rank``'s tensors, merged over the pipeline stages' files when the checkpoint has them;
    only ``names`` when given (a pipeline stage reads its own layers, not the whole TP shard)."""
    ckpt_dir = Path(ckpt_dir)
    pp = pipeline_parallel_size(load_config(ckpt_dir))
    paths = [ckpt_dir / model_shard_name(tp_rank, None if pp == 1 else r) for r in range(pp)]
    shard: dict[str, torch.Tensor] = {}
    for path in paths:
        if not path.is_file():
            raise FileNotFoundError(f"{path}: model shard for TP rank {tp_rank} is missing")
        if names is None:
            shard.update(load_file(str(path)))
            continue
        with safe_open(str(path), framework="pt") as f:
            shard.update({k: f.get_tensor(k) for k in f.keys() if k in names})
    return shard


def save_model_shards(ckpt_dir: str | Path, shards: list[dict[str, torch.Tensor]], config: dict) -> None:
    """Write every TP rank's shard and the config (``config["parallel"]["tensor_model_parallel_size"]``
    is set to ``len(shards)``)."""
    ckpt_dir = Path(ckpt_dir)
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    config = {**config, "parallel": {**config.get("parallel", {}), "tensor_model_parallel_size": len(shards)}}
    for tp_rank, shard in enumerate(shards):
        save_model_shard(ckpt_dir, tp_rank, shard)
    save_config(ckpt_dir, config)


def load_model_shards(ckpt_dir: str | Path) -> tuple[list[dict[str, torch.Tensor]], dict]:
    config = load_config(ckpt_dir)
    return [load_model_shard(ckpt_dir, r) for r in range(tensor_parallel_size(config))], config
