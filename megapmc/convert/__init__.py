"""Checkpoint conversion: Hugging Face / Meta LLaMA ⇄ megapmc, with TP × PP resharding.

Public API (what training, evaluation and ``tools/convert_checkpoint.py`` use):

- :func:`load_megapmc` ``(dir, tensor_model_parallel_size=None) -> (LlamaConfig, [state_dict per TP rank])``
- :func:`export_to_hf` ``(megapmc_dir, hf_dir, tokenizer_model=None, dtype="bf16")``
- :func:`import_from_hf` ``(hf_dir, out_dir, tp=1, pp=1)``
- :func:`reshard` ``(shards, config, target_tp) -> shards`` (in memory)
- :func:`convert` with a :class:`ConvertConfig` for everything else (Meta loader, streaming reshard, verify).
"""
from __future__ import annotations

from pathlib import Path

from megapmc.convert.converter import ConvertConfig, convert
from megapmc.convert.errors import ConversionError, VerificationError
from megapmc.convert.megapmc_format import load_megapmc, resolve_checkpoint_dir
from megapmc.convert.sharding import reshard


def export_to_hf(megapmc_dir: str | Path, hf_dir: str | Path, tokenizer_model: str | Path | None = None,
                 dtype: str = "bf16", verify: bool = False) -> Path:
    """Write a megapmc checkpoint (any TP size) as a ``LlamaForCausalLM`` directory."""
    return convert(ConvertConfig("megapmc", "hf", Path(megapmc_dir), Path(hf_dir), dtype=dtype,
                                 tokenizer_model=tokenizer_model, verify=verify, progress=False))


def import_from_hf(hf_dir: str | Path, out_dir: str | Path, tp: int = 1, dtype: str = "fp32",
                   verify: bool = False, pp: int = 1) -> Path:
    """Write a ``LlamaForCausalLM`` directory as a megapmc run directory with a model shard per (TP, PP)
    rank (layers split evenly over ``pp`` stages)."""
    return convert(ConvertConfig("hf", "megapmc", Path(hf_dir), Path(out_dir), target_tensor_parallel_size=tp,
                                 target_pipeline_parallel_size=pp, dtype=dtype, verify=verify, progress=False))


__all__ = [
    "ConversionError", "ConvertConfig", "VerificationError", "convert", "export_to_hf", "import_from_hf",
    "load_megapmc", "reshard", "resolve_checkpoint_dir",
]
