"""The loader registry: which class reads each ``--loader`` format. The driver (``converter``) and the
logits check (``verify``) both open sources through it, so neither imports the other."""
from __future__ import annotations

from pathlib import Path

from megapmc.convert.hf import HFLoader
from megapmc.convert.megapmc_format import MegapmcLoader
from megapmc.convert.meta import MetaLoader
from megapmc.model.config import PRESETS

LOADERS = ("hf", "meta", "megapmc")


def open_loader(kind: str, path: Path, preset: str | None = None):
    """The loader of format ``kind`` over ``path``; Meta checkpoints carry no context length, so it comes
    from ``preset`` (2048, LLaMA's, without one)."""
    if kind == "hf":
        return HFLoader(path)
    if kind == "meta":
        max_pos = PRESETS[preset].max_position_embeddings if preset else 2048
        return MetaLoader(path, max_position_embeddings=max_pos)
    if kind == "megapmc":
        return MegapmcLoader(path)
    raise ValueError(f"--loader {kind!r}: choose one of {', '.join(LOADERS)}")
