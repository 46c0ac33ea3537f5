"""Split full (Hugging Face layout, exact vocabulary) tensors into megapmc's per-TP-rank parameters,
and merge them back, for any tensor-parallel size.

Layouts (docs/architecture.md): the vocabulary rows of ``embed_tokens``/``lm_head`` are padded to
``config.padded_vocab_size(tp)`` and cut into contiguous slices; ``qkv_proj`` holds on each rank
``[q_local; k_local; v_local]`` with ``nq/tp`` query and ``nkv/tp`` KV heads; ``gate_up_proj`` holds
``[gate_local; up_local]``; ``o_proj`` and ``down_proj`` are split along columns; norms are replicated.
"""
from __future__ import annotations

import torch

from megapmc.convert.name_map import ParamSpec, TPSplit, all_params, unit_params, conversion_units
from megapmc.model.config import LlamaConfig


def pad_vocab_rows(weight: torch.Tensor, padded_vocab_size: int) -> torch.Tensor:
    """``[vocab, h]`` -> ``[padded_vocab, h]``; the padding rows are zeros (never a real token's id)."""
    extra = padded_vocab_size - weight.shape[0]
    if extra < 0:
        raise ValueError(f"vocabulary has {weight.shape[0]} rows, more than the padded size {padded_vocab_size}")
    if extra == 0:
        return weight
    return torch.cat([weight, weight.new_zeros(extra, *weight.shape[1:])])


def trim_vocab_rows(weight: torch.Tensor, vocab_size: int) -> torch.Tensor:
    """``[padded_vocab, h]`` -> ``[vocab, h]``: the exported model has exactly the tokenizer's vocabulary."""
    if weight.shape[0] < vocab_size:
        raise ValueError(f"vocabulary weight has {weight.shape[0]} rows, fewer than vocab_size {vocab_size}")
    return weight[:vocab_size]


def split_vocab_rows(weight: torch.Tensor, config: LlamaConfig, tp: int) -> list[torch.Tensor]:
    padded = pad_vocab_rows(weight, config.padded_vocab_size(tp))  # [V, h]
    return [t.contiguous() for t in padded.chunk(tp, dim=0)]  # tp × [V/tp, h]


def merge_vocab_rows(shards: list[torch.Tensor], config: LlamaConfig) -> torch.Tensor:
    return trim_vocab_rows(torch.cat(shards, dim=0), config.vocab_size)  # [vocab, h]


def _split_fused(parts: list[torch.Tensor], tp: int) -> list[torch.Tensor]:
    """Cut each part into ``tp`` row blocks and concatenate, per rank, the blocks in part order."""
    chunks = [p.chunk(tp, dim=0) for p in parts]
    return [torch.cat([c[r] for c in chunks], dim=0).contiguous() for r in range(tp)]


def _merge_fused(shards: list[torch.Tensor], local_rows: list[int]) -> list[torch.Tensor]:
    pieces = [s.split(local_rows, dim=0) for s in shards]  # tp × parts
    return [torch.cat([p[j] for p in pieces], dim=0) for j in range(len(local_rows))]


def split_qkv(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, config: LlamaConfig, tp: int) -> list[torch.Tensor]:
    """q ``[nq·d, h]``, k/v ``[nkv·d, h]`` -> tp × ``[(nq+2·nkv)/tp·d, h]`` as ``[q_local; k_local; v_local]``.
    Whole heads stay together because ``tp`` divides both head counts."""
    config.check_tensor_parallel(tp)
    return _split_fused([q, k, v], tp)


def merge_qkv(shards: list[torch.Tensor], config: LlamaConfig) -> list[torch.Tensor]:
    """Inverse of :func:`split_qkv`: ``[q, k, v]``."""
    tp, d = len(shards), config.head_dim
    q_rows, kv_rows = config.num_attention_heads // tp * d, config.num_key_value_heads // tp * d
    return _merge_fused(shards, [q_rows, kv_rows, kv_rows])


def split_gate_up(gate: torch.Tensor, up: torch.Tensor, config: LlamaConfig, tp: int) -> list[torch.Tensor]:
    """gate/up ``[ffn, h]`` -> tp × ``[2·ffn/tp, h]`` as ``[gate_local; up_local]``."""
    config.check_tensor_parallel(tp)
    return _split_fused([gate, up], tp)


def merge_gate_up(shards: list[torch.Tensor], config: LlamaConfig) -> list[torch.Tensor]:
    rows = config.ffn_hidden_size // len(shards)
    return _merge_fused(shards, [rows, rows])


def split_columns(weight: torch.Tensor, tp: int) -> list[torch.Tensor]:
    if weight.shape[1] % tp:
        raise ValueError(f"{weight.shape[1]} columns cannot be split {tp} ways")
    return [t.contiguous() for t in weight.chunk(tp, dim=1)]


def merge_replicated(shards: list[torch.Tensor], name: str) -> torch.Tensor:
    """A replicated parameter must be identical on every rank; a difference means a corrupt checkpoint."""
    for r, s in enumerate(shards[1:], start=1):
        if not torch.equal(s, shards[0]):
            raise ValueError(f"replicated parameter {name} differs between TP rank 0 and TP rank {r}")
    return shards[0]


def shard_param(spec: ParamSpec, full: list[torch.Tensor], config: LlamaConfig, tp: int) -> list[torch.Tensor]:
    """Full tensors (in ``spec.hf`` order) -> the megapmc parameter ``spec.megapmc`` on each TP rank."""
    if spec.tp_split is TPSplit.VOCAB_ROWS:
        return split_vocab_rows(full[0], config, tp)
    if spec.tp_split is TPSplit.QKV:
        return split_qkv(*full, config, tp)
    if spec.tp_split is TPSplit.GATE_UP:
        return split_gate_up(*full, config, tp)
    if spec.tp_split is TPSplit.COLUMNS:
        return split_columns(full[0], tp)
    return [full[0]] * tp


def merge_param(spec: ParamSpec, shards: list[torch.Tensor], config: LlamaConfig) -> list[torch.Tensor]:
    """Per-rank megapmc tensors -> the full tensors in ``spec.hf`` order."""
    if spec.tp_split is TPSplit.VOCAB_ROWS:
        return [merge_vocab_rows(shards, config)]
    if spec.tp_split is TPSplit.QKV:
        return merge_qkv(shards, config)
    if spec.tp_split is TPSplit.GATE_UP:
        return merge_gate_up(shards, config)
    if spec.tp_split is TPSplit.COLUMNS:
        return [torch.cat(shards, dim=1)]
    return [merge_replicated(shards, spec.megapmc)]


def full_shapes(spec: ParamSpec, config: LlamaConfig) -> list[tuple[int, ...]]:
    """Shapes of the full Hugging Face tensors of ``spec`` (exact vocabulary)."""
    h, d, f = config.hidden_size, config.head_dim, config.ffn_hidden_size
    nq, nkv = config.num_attention_heads, config.num_key_value_heads
    name = spec.megapmc
    if spec.tp_split is TPSplit.VOCAB_ROWS:
        return [(config.vocab_size, h)]
    if spec.tp_split is TPSplit.QKV:
        return [(nq * d, h), (nkv * d, h), (nkv * d, h)]
    if spec.tp_split is TPSplit.GATE_UP:
        return [(f, h), (f, h)]
    if name.endswith("o_proj.weight"):
        return [(h, nq * d)]
    if name.endswith("down_proj.weight"):
        return [(h, f)]
    return [(h,)]


def local_shape(spec: ParamSpec, config: LlamaConfig, tp: int) -> tuple[int, ...]:
    """Shape of the megapmc parameter on one TP rank."""
    shapes = full_shapes(spec, config)
    if spec.tp_split is TPSplit.VOCAB_ROWS:
        return (config.padded_vocab_size(tp) // tp, config.hidden_size)
    if spec.tp_split in (TPSplit.QKV, TPSplit.GATE_UP):
        return (sum(s[0] for s in shapes) // tp, config.hidden_size)
    if spec.tp_split is TPSplit.COLUMNS:
        rows, cols = shapes[0]
        return (rows, cols // tp)
    return shapes[0]


def megapmc_shapes(config: LlamaConfig, tp: int) -> dict[str, tuple[int, ...]]:
    """Every megapmc parameter name -> its shape on one TP rank, in storage order."""
    return {spec.megapmc: local_shape(spec, config, tp) for spec in all_params(config.num_layers)}


def shards_to_hf(shards: list[dict[str, torch.Tensor]], config: LlamaConfig) -> dict[str, torch.Tensor]:
    """In-memory merge of megapmc TP shards into one Hugging Face state dict."""
    out = {}
    for unit in conversion_units(config.num_layers):
        for spec in unit_params(unit):
            out.update(zip(spec.hf, merge_param(spec, [s[spec.megapmc] for s in shards], config)))
    return out


def hf_to_shards(state: dict[str, torch.Tensor], config: LlamaConfig, tp: int) -> list[dict[str, torch.Tensor]]:
    """In-memory split of a Hugging Face state dict into megapmc TP shards."""
    config.check_tensor_parallel(tp)
    shards: list[dict[str, torch.Tensor]] = [{} for _ in range(tp)]
    for spec in all_params(config.num_layers):
        for rank, t in enumerate(shard_param(spec, [state[n] for n in spec.hf], config, tp)):
            shards[rank][spec.megapmc] = t
    return shards


def reshard(shards: list[dict[str, torch.Tensor]], config: LlamaConfig, target_tp: int) -> list[dict[str, torch.Tensor]]:
    """megapmc shards at any TP size -> shards at ``target_tp`` (vocabulary padding re-derived)."""
    return hf_to_shards(shards_to_hf(shards, config), config, target_tp)
