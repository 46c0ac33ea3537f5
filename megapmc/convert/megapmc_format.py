"""megapmc checkpoints as a conversion source and target, at any tensor- and pipeline-parallel size.

A ``--load-dir`` may be a run directory (``latest_checkpointed_iteration.txt`` names the iteration) or one
``iter_XXXXXXX`` directory. Shards are read and written through the names and config of
:mod:`megapmc.checkpoint.model_io`, one tensor at a time (:mod:`megapmc.convert.safetensors_stream`),
so resharding a 13B checkpoint never holds more than a layer. A pipelined target gets the trainer's
files: ``model_tpXX_ppYYY`` per (TP, PP) rank, each holding its stage's parameters under the one-process
names, and the trainer's ``"parallel"`` section in ``config.json``.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch

from megapmc.checkpoint import checkpointing, model_io
from megapmc.checkpoint.checkpointing import TRACKER_NAME, iteration_dir_name
from megapmc.checkpoint.errors import CheckpointError
from megapmc.convert.errors import ConversionError
from megapmc.convert.name_map import conversion_units, unit_params
from megapmc.convert.safetensors_stream import SafetensorsReader, SafetensorsWriter
from megapmc.convert.sharding import megapmc_shapes, merge_param, reshard, shard_param
from megapmc.model.config import LlamaConfig
from megapmc.pipeline_parallel.config import PipelineConfig

CHOOSE_ONE_DIRECTORY = "give one of them (its iter_XXXXXXX directory) instead"  # conversion and evaluation


def resolve_checkpoint_dir(path: str | Path) -> Path:
    """The ``iter_XXXXXXX`` directory that ``path`` (a run directory or an iteration directory) names,
    found as the trainer finds it (``checkpointing.resolve_checkpoint_dir``), with conversion's errors
    and a check that it is megapmc's (a Hugging Face directory also has a ``config.json``)."""
    try:
        found = checkpointing.resolve_checkpoint_dir(path, choose=CHOOSE_ONE_DIRECTORY)
    except CheckpointError as e:
        raise ConversionError(str(e)) from None
    if found is None:
        raise ConversionError(
            f"{path}: neither {TRACKER_NAME} nor {model_io.CONFIG_NAME}, so this is not a megapmc checkpoint "
            f"(a run directory or an iter_XXXXXXX directory); check --load-dir and --loader"
        )
    config = found / model_io.CONFIG_NAME
    try:
        is_megapmc = "format_version" in json.loads(config.read_text())
    except json.JSONDecodeError:
        is_megapmc = False
    if not is_megapmc:
        raise ConversionError(
            f"{config}: has no format_version, so {found} is not a megapmc checkpoint (a Hugging Face directory "
            f"also has a config.json: use --loader hf for those); check --load-dir and --loader"
        )
    return found


class _StageReaders:
    """One TP rank's pipeline-stage files read as one shard: their tensors are disjoint (one-process names)."""

    def __init__(self, readers: list[SafetensorsReader]):
        self.path = readers[0].path.parent
        self._reader = {name: r for r in readers for name in r.entries}
        self.entries = {name: r.entries[name] for name, r in self._reader.items()}

    def shape(self, name: str) -> tuple[int, ...]:
        return self._reader[name].shape(name)

    def get(self, name: str) -> torch.Tensor:
        return self._reader[name].get(name)


class MegapmcLoader:
    """Reads a megapmc checkpoint unit by unit, merging its TP shards into full Hugging Face-layout tensors."""

    def __init__(self, path: str | Path):
        self.path = resolve_checkpoint_dir(path)
        try:
            self.raw_config = model_io.load_config(self.path)
            self.config = LlamaConfig.from_dict(self.raw_config["model"])
        except (KeyError, ValueError, TypeError) as e:
            raise ConversionError(f"{self.path / model_io.CONFIG_NAME}: not a usable megapmc config ({e})") from None
        self.tp = model_io.tensor_parallel_size(self.raw_config)
        pp = model_io.pipeline_parallel_size(self.raw_config)
        stages = [None] if pp == 1 else list(range(pp))  # a pipelined run: each TP rank's stage files
        self.readers = []
        for rank in range(self.tp):
            files = []
            for stage in stages:
                shard = self.path / model_io.model_shard_name(rank, stage)
                if not shard.is_file():
                    raise ConversionError(
                        f"{shard}: missing; config.json says tensor_model_parallel_size={self.tp}"
                        + (f" and pipeline_model_parallel_size={pp}" if pp > 1 else "") + ", so "
                        + ", ".join(model_io.model_shard_name(r, p) for r in range(self.tp) for p in stages)
                        + " must all be present")
                files.append(SafetensorsReader(shard))
            self.readers.append(files[0] if pp == 1 else _StageReaders(files))
        expected = megapmc_shapes(self.config, self.tp)
        for reader in self.readers:
            for name, shape in expected.items():
                if name not in reader.entries:
                    raise ConversionError(f"{reader.path}: parameter {name} is missing")
                if reader.shape(name) != shape:
                    raise ConversionError(
                        f"{reader.path}: {name} has shape {reader.shape(name)} but config.json's model at "
                        f"TP={self.tp} implies {shape}"
                    )

    @property
    def tokenizer_section(self) -> dict:
        return dict(self.raw_config.get("tokenizer") or {})

    def read_unit(self, unit) -> dict[str, torch.Tensor]:
        out = {}
        for spec in unit_params(unit):
            out.update(zip(spec.hf, merge_param(spec, [r.get(spec.megapmc) for r in self.readers], self.config)))
        return out

    def close(self) -> None:
        self.readers = []


def unit_stages(num_layers: int, pipeline: PipelineConfig) -> dict:
    """Conversion unit -> the pipeline rank that holds it: the embedding on the first, each layer where
    ``PipelineConfig.stage_layers`` puts it (chunks of an interleaved rank included), the final norm and
    output layer on the last."""
    stages = {"embedding": 0, "final": pipeline.pipeline_model_parallel_size - 1}
    for rank, chunks in enumerate(pipeline.stage_layers(num_layers)):
        stages.update({layer: rank for chunk in chunks for layer in chunk})
    return stages


class MegapmcSaver:
    """Writes a megapmc run directory (``iter_0000000`` + tracker) with a model shard per TP rank, or per
    (TP, PP) rank for a pipelined ``pipeline`` (``PipelineConfig.stage_layers`` raises a ValueError if
    the layers do not split that way)."""

    def __init__(self, out_dir: str | Path, config: LlamaConfig, tp: int, dtype: torch.dtype = torch.float32,
                 extra_config: dict | None = None, iteration: int = 0, pipeline: PipelineConfig | None = None):
        config.check_tensor_parallel(tp)
        self.pipeline = pipeline or PipelineConfig()
        self.stage = unit_stages(config.num_layers, self.pipeline)
        self.out_dir, self.config, self.tp = Path(out_dir), config, tp
        self.iteration, self.extra_config = iteration, dict(extra_config or {})
        self.ckpt_dir = self.out_dir / iteration_dir_name(iteration)
        self.ckpt_dir.mkdir(parents=True, exist_ok=True)
        shapes = megapmc_shapes(config, tp)
        pp = self.pipeline.pipeline_model_parallel_size
        layouts: list[dict] = [{} for _ in range(pp)]  # per stage: name -> (dtype, shape), in storage order
        for unit in conversion_units(config.num_layers):
            for spec in unit_params(unit):
                layouts[self.stage[unit]][spec.megapmc] = (dtype, shapes[spec.megapmc])
        # writers[tp_rank][pp_rank]; without pipelining the PP = 1 file names (no _ppYYY)
        self.writers = [[SafetensorsWriter(self.ckpt_dir / model_io.model_shard_name(r, None if pp == 1 else p),
                                           layouts[p]) for p in range(pp)] for r in range(tp)]

    def write_unit(self, unit, tensors: dict[str, torch.Tensor]) -> None:
        stage = self.stage[unit]
        for spec in unit_params(unit):
            shards = shard_param(spec, [tensors[n] for n in spec.hf], self.config, self.tp)
            for writers, shard in zip(self.writers, shards):
                writers[stage].write(spec.megapmc, shard)

    def finish(self) -> None:
        for writers in self.writers:
            for w in writers:
                w.close()
        # The trainer's "parallel" section (RunConfig.to_dict): the pipeline fields only when pipelining.
        piped = self.pipeline.to_dict() if self.pipeline.pipeline_model_parallel_size > 1 else {}
        model_io.save_config(self.ckpt_dir, {
            **self.extra_config, "model": self.config.to_dict(),
            "parallel": {**self.extra_config.get("parallel", {}), "tensor_model_parallel_size": self.tp, **piped},
        })
        (self.out_dir / TRACKER_NAME).write_text(str(self.iteration))


def load_megapmc(path: str | Path, tensor_model_parallel_size: int | None = None
                 ) -> tuple[LlamaConfig, list[dict[str, torch.Tensor]]]:
    """Load a megapmc checkpoint (run or iteration directory) into memory as per-TP-rank state dicts,
    resharded to ``tensor_model_parallel_size`` if given (1 gives ``[full_state_dict]``)."""
    ckpt = resolve_checkpoint_dir(path)
    try:
        shards, raw = model_io.load_model_shards(ckpt)
        config = LlamaConfig.from_dict(raw["model"])
    except (KeyError, ValueError, TypeError) as e:
        raise ConversionError(f"{ckpt}: not a usable megapmc checkpoint ({e})") from None
    except FileNotFoundError as e:
        raise ConversionError(str(e)) from None
    target = tensor_model_parallel_size or len(shards)
    if target != len(shards):
        config.check_tensor_parallel(target)
        shards = reshard(shards, config, target)
    return config, shards
