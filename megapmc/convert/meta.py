"""Meta's original LLaMA format: ``params.json`` plus ``consolidated.NN.pth`` model-parallel shards.

Each shard holds a slice of every parameter (``wq``/``wk``/``wv``/``w1``/``w3``/``output`` split by rows,
``wo``/``w2`` by columns, ``tok_embeddings`` by the hidden dimension, norms replicated: ``meta_mp_dim`` in
the name map). A unit is read by mapping every shard (``torch.load(mmap=True)``), copying out that unit's
slices and dropping the mappings again, so resident memory stays at about one layer.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import torch

from megapmc.convert.errors import ConversionError
from megapmc.convert.name_map import unit_params
from megapmc.convert.rotary_layout import meta_to_hf_rows
from megapmc.model.config import LlamaConfig

_SHARD = re.compile(r"consolidated\.(\d+)\.pth$")


def meta_ffn_hidden_size(dim: int, multiple_of: int, ffn_dim_multiplier: float | None = None) -> int:
    """The SwiGLU width of Meta's ``FeedForward``: 2/3 of 4·dim, scaled, rounded up to ``multiple_of``."""
    hidden = int(2 * (4 * dim) / 3)
    if ffn_dim_multiplier is not None:
        hidden = int(ffn_dim_multiplier * hidden)
    return multiple_of * ((hidden + multiple_of - 1) // multiple_of)


def _load(path: Path) -> dict[str, torch.Tensor]:
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except RuntimeError:  # legacy serialization cannot be mapped
        return torch.load(path, map_location="cpu", weights_only=True)


class MetaLoader:
    """Reads a Meta checkpoint unit by unit, merging its model-parallel shards and converting q/k rows to
    Hugging Face's rotary layout."""

    def __init__(self, path: str | Path, max_position_embeddings: int = 2048):
        self.path = Path(path)
        params_path = self.path / "params.json"
        if not params_path.is_file():
            raise ConversionError(
                f"{self.path}: no params.json, so this is not a Meta LLaMA checkpoint directory (expected "
                f"params.json and consolidated.00.pth ...); check --load-dir and --loader"
            )
        params = json.loads(params_path.read_text())
        shards = sorted((int(m.group(1)), p) for p in self.path.iterdir() if (m := _SHARD.search(p.name)))
        if not shards:
            raise ConversionError(f"{self.path}: params.json but no consolidated.NN.pth shards")
        numbers = [n for n, _ in shards]
        if numbers != list(range(len(numbers))):
            gaps = sorted(set(range(max(numbers) + 1)) - set(numbers))
            raise ConversionError(
                f"{self.path}: model-parallel shard(s) {', '.join(f'consolidated.{g:02d}.pth' for g in gaps)} "
                f"missing; copy the complete checkpoint"
            )
        self.shard_paths = [p for _, p in shards]
        try:
            dim, heads = params["dim"], params["n_heads"]
            first = _load(self.shard_paths[0])
            vocab = params.get("vocab_size", -1)
            if vocab is None or vocab <= 0:  # LLaMA-1 writes -1: the embedding knows
                vocab = first["tok_embeddings.weight"].shape[0]
            self.config = LlamaConfig(
                num_layers=params["n_layers"], hidden_size=dim, num_attention_heads=heads,
                num_key_value_heads=params.get("n_kv_heads") or heads,
                ffn_hidden_size=meta_ffn_hidden_size(dim, params.get("multiple_of", 256),
                                                     params.get("ffn_dim_multiplier")),
                vocab_size=vocab, max_position_embeddings=max_position_embeddings,
                rms_norm_eps=params.get("norm_eps", 1e-6), rope_theta=float(params.get("rope_theta", 10000.0)),
            )
        except (KeyError, ValueError) as e:
            raise ConversionError(f"{params_path}: not a usable LLaMA params.json ({e})") from None
        wq_rows = first["layers.0.attention.wq.weight"].shape[0]
        expected_shards = dim // wq_rows
        del first
        if expected_shards != len(self.shard_paths):
            raise ConversionError(
                f"{self.path}: consolidated.00.pth holds 1/{expected_shards} of wq but {len(self.shard_paths)} "
                f"shard(s) are present; a model-parallel shard is missing (or params.json is wrong)"
            )

    def read_unit_raw(self, unit) -> dict[str, torch.Tensor]:
        """Meta-named tensors of ``unit``, merged across model-parallel shards, in Meta's rotary layout."""
        specs = unit_params(unit)
        pieces: dict[str, list[torch.Tensor]] = {n: [] for spec in specs for n in spec.meta}
        for path in self.shard_paths:
            state = _load(path)
            for spec in specs:
                for name in spec.meta:
                    if name not in state:
                        raise ConversionError(f"{path}: tensor {name} is missing; the shard is truncated or not LLaMA")
                    if spec.meta_mp_dim is not None or not pieces[name]:
                        pieces[name].append(state[name].clone())
            del state
        return {
            name: torch.cat(parts, dim=spec.meta_mp_dim) if spec.meta_mp_dim is not None else parts[0]
            for spec in specs for name, parts in ((n, pieces[n]) for n in spec.meta)
        }

    def read_unit(self, unit) -> dict[str, torch.Tensor]:
        """Hugging Face-named, Hugging Face-layout tensors of ``unit``."""
        raw = self.read_unit_raw(unit)
        out = {}
        for spec in unit_params(unit):
            tensors = [raw[n] for n in spec.meta]
            if spec.rotary:
                q, k, v = tensors
                tensors = [meta_to_hf_rows(q, self.config.num_attention_heads),
                           meta_to_hf_rows(k, self.config.num_key_value_heads), v]
            out.update(zip(spec.hf, tensors))
        return out

    def close(self) -> None:
        pass
