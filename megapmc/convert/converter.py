"""The conversion driver: one loader, one saver, streamed unit by unit under a temporary name.

Loaders (:class:`HFLoader`, :class:`MetaLoader`, :class:`MegapmcLoader`) yield, per unit (embedding, each
layer, final norm + output layer), full tensors under Hugging Face names, in Hugging Face's rotary layout,
with the exact vocabulary. Savers (:class:`HFSaver`, :class:`MegapmcSaver`) turn those into their format.
So every direction passes through one representation, and each layout change lives in one function.
"""
from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

import torch
from tqdm import tqdm

from megapmc.convert.errors import ConversionError
from megapmc.convert.hf import DEFAULT_MAX_SHARD_BYTES, HFLoader, HFSaver
from megapmc.convert.loaders import LOADERS, open_loader
from megapmc.convert.megapmc_format import MegapmcLoader, MegapmcSaver
from megapmc.convert.name_map import conversion_units, unit_params
from megapmc.convert.sharding import full_shapes
from megapmc.convert.verify import verify_conversion
from megapmc.model.config import PRESETS, LlamaConfig
from megapmc.pipeline_parallel.config import PipelineConfig

SAVERS = ("hf", "megapmc")
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
_SHAPE_FIELDS = ("num_layers", "hidden_size", "num_attention_heads", "num_key_value_heads", "ffn_hidden_size")


@dataclass
class ConvertConfig:
    """One conversion, as the CLI flags describe it."""

    loader: str
    saver: str
    load_dir: Path
    save_dir: Path
    target_tensor_parallel_size: int = 1
    # A pipelined megapmc target, split as the trainer's flags of the same names split it.
    target_pipeline_parallel_size: int = 1
    decoder_first_pipeline_num_layers: int | None = None
    decoder_last_pipeline_num_layers: int | None = None
    num_layers_per_virtual_pipeline_stage: int | None = None
    dtype: str | None = None  # None: bf16 for a Hugging Face export, fp32 for megapmc
    tokenizer_model: Path | None = None
    model_preset: str | None = None  # if given, the source's shape must match this preset
    make_vocab_size_divisible_by: int | None = None  # None: keep the source's (megapmc) or the default
    max_shard_bytes: int = DEFAULT_MAX_SHARD_BYTES
    verify: bool = False
    verify_tolerance: float = 1e-3
    progress: bool = True
    added_tokens: list[str] = field(default_factory=list)
    pipeline: PipelineConfig = field(init=False)  # from the target_pipeline / decoder / virtual fields

    def __post_init__(self):
        if self.loader not in LOADERS:
            raise ConversionError(f"--loader {self.loader!r}: choose one of {', '.join(LOADERS)}")
        if self.saver not in SAVERS:
            raise ConversionError(f"--saver {self.saver!r}: choose one of {', '.join(SAVERS)}")
        if self.dtype is not None and self.dtype not in DTYPES:
            raise ConversionError(f"--dtype {self.dtype!r}: choose one of {', '.join(DTYPES)}")
        if self.model_preset is not None and self.model_preset not in PRESETS:
            raise ConversionError(f"--model-preset {self.model_preset!r}: choose one of {', '.join(PRESETS)}")
        if self.target_tensor_parallel_size < 1:
            raise ConversionError(f"--target-tensor-parallel-size must be >= 1, got {self.target_tensor_parallel_size}")
        try:
            self.pipeline = PipelineConfig(
                self.target_pipeline_parallel_size, self.num_layers_per_virtual_pipeline_stage,
                self.decoder_first_pipeline_num_layers, self.decoder_last_pipeline_num_layers)
        except ValueError as e:
            raise ConversionError(_target_flags(str(e))) from None
        self.load_dir, self.save_dir = Path(self.load_dir), Path(self.save_dir)
        if self.tokenizer_model is not None:
            self.tokenizer_model = Path(self.tokenizer_model)
        if self.save_dir.exists():
            raise ConversionError(f"--save-dir {self.save_dir} exists; choose a new directory or remove it")
        if not self.load_dir.is_dir():
            raise ConversionError(f"--load-dir {self.load_dir} is not a directory")

    @property
    def torch_dtype(self) -> torch.dtype:
        return DTYPES[self.dtype or ("bf16" if self.saver == "hf" else "fp32")]


def check_preset(config: LlamaConfig, preset: str, where: Path) -> None:
    expected = PRESETS[preset]
    wrong = [f"{f}={getattr(config, f)} (preset: {getattr(expected, f)})" for f in _SHAPE_FIELDS
             if getattr(config, f) != getattr(expected, f)]
    if wrong:
        raise ConversionError(
            f"{where}: shapes do not match --model-preset {preset}: {', '.join(wrong)}; pick the preset of this "
            f"checkpoint or leave --model-preset out"
        )


def _target_flags(message: str) -> str:
    """A ``PipelineConfig`` message with the trainer's flag renamed to this tool's."""
    return message.replace("--pipeline-model-parallel-size", "--target-pipeline-parallel-size")


def check_pipeline_parallel(config: LlamaConfig, pipeline: PipelineConfig, where: Path) -> None:
    try:
        pipeline.stage_layers(config.num_layers)
    except ValueError as e:
        raise ConversionError(f"{where}: {_target_flags(str(e))}") from None


def check_tensor_parallel(config: LlamaConfig, tp: int) -> None:
    for name in ("num_attention_heads", "num_key_value_heads", "ffn_hidden_size"):
        if getattr(config, name) % tp:
            raise ConversionError(
                f"--target-tensor-parallel-size {tp} does not divide {name}={getattr(config, name)}; "
                f"choose a size that divides the query heads, the KV heads and the FFN width"
            )


def check_unit_shapes(tensors: dict[str, torch.Tensor], unit, config: LlamaConfig, where: Path) -> None:
    for spec in unit_params(unit):
        for name, shape in zip(spec.hf, full_shapes(spec, config)):
            if tuple(tensors[name].shape) != shape:
                raise ConversionError(
                    f"{where}: {name} has shape {tuple(tensors[name].shape)} but the checkpoint's config "
                    f"(hidden_size={config.hidden_size}, heads={config.num_attention_heads}, kv_heads="
                    f"{config.num_key_value_heads}, ffn={config.ffn_hidden_size}, vocab={config.vocab_size}) "
                    f"implies {shape}"
                )


def _tokenizer_for(cfg: ConvertConfig, loader) -> tuple[Path | None, list[str], dict]:
    """The tokenizer (file or directory) and added tokens an export should carry, and the megapmc tokenizer section."""
    section = loader.tokenizer_section if isinstance(loader, MegapmcLoader) else {}
    model = cfg.tokenizer_model
    if model is None and isinstance(loader, HFLoader):
        model = loader.tokenizer_model
    if model is None and section.get("tokenizer_model") and Path(section["tokenizer_model"]).exists():
        model = Path(section["tokenizer_model"])
    added = cfg.added_tokens or list(section.get("added_tokens", []))
    if model is not None:
        section = {**section, "tokenizer_model": str(Path(model).resolve())}
    if added:
        section = {**section, "added_tokens": added}
    return model, added, section


def convert(cfg: ConvertConfig) -> Path:
    """Run one conversion; return the finished ``save_dir``. Output goes to ``<save_dir>.tmp`` and is
    renamed only once complete (and verified, with ``verify``)."""
    loader = open_loader(cfg.loader, cfg.load_dir, cfg.model_preset)
    config = loader.config
    if cfg.model_preset:
        check_preset(config, cfg.model_preset, cfg.load_dir)
    if cfg.make_vocab_size_divisible_by:
        config = config.replace(make_vocab_size_divisible_by=cfg.make_vocab_size_divisible_by)
    tp, pipeline = cfg.target_tensor_parallel_size, cfg.pipeline
    if cfg.saver == "megapmc":
        check_tensor_parallel(config, tp)
        check_pipeline_parallel(config, pipeline, cfg.load_dir)
    elif tp != 1 or pipeline.pipeline_model_parallel_size != 1:
        raise ConversionError("--target-tensor-parallel-size and --target-pipeline-parallel-size apply to "
                              "--saver megapmc only")
    tokenizer_model, added_tokens, tokenizer_section = _tokenizer_for(cfg, loader)

    tmp = cfg.save_dir.with_name(cfg.save_dir.name + ".tmp")
    if tmp.exists():  # left by an interrupted run of this command; never a finished output
        shutil.rmtree(tmp)
    if cfg.saver == "hf":
        saver = HFSaver(tmp, config, cfg.torch_dtype, cfg.max_shard_bytes, tokenizer_model, added_tokens)
    else:
        extra = {"tokenizer": tokenizer_section,
                 "conversion": {"loader": cfg.loader, "load_dir": str(cfg.load_dir.resolve())}}
        saver = MegapmcSaver(tmp, config, tp, cfg.torch_dtype, extra_config=extra, pipeline=pipeline)
    units = conversion_units(config.num_layers)
    for unit in tqdm(units, desc=f"{cfg.loader} -> {cfg.saver}", unit="layer", disable=not cfg.progress):
        tensors = loader.read_unit(unit)
        check_unit_shapes(tensors, unit, config, cfg.load_dir)
        saver.write_unit(unit, tensors)
        del tensors
    saver.finish()
    loader.close()
    if cfg.verify:
        verify_conversion(cfg.loader, cfg.load_dir, cfg.saver, tmp, dtype=cfg.torch_dtype,
                          tokenizer=tokenizer_model, tolerance=cfg.verify_tolerance,
                          vocab_size=config.vocab_size)
    tmp.rename(cfg.save_dir)
    return cfg.save_dir
