"""Split full (Hugging Face layout, exact vocabulary) tensors into megapmc's per-TP-rank parameters,
and merge them back, for any tensor-parallel size.

How each parameter is split is read off the model itself: :func:`model_layouts` builds ``LlamaModel``
for the config on the meta device and collects the layout each layer declares
(``megapmc.parallel.layout``): the vocabulary rows of ``embed_tokens``/``lm_head`` padded to
``config.padded_vocab_size(tp)`` and cut into contiguous slices, ``qkv_proj`` as ``[q_local; k_local;
v_local]`` blocks, ``gate_up_proj`` as ``[gate_local; up_local]``, ``o_proj``/``down_proj`` by columns,
norms replicated. The name map supplies only names; a fused parameter's Hugging Face tensors are its
blocks, in order.
"""
from __future__ import annotations

import functools
import json

import torch

from megapmc.convert.name_map import ParamSpec, all_params, conversion_units, unit_params
from megapmc.model.config import LlamaConfig
from megapmc.model.llama import build_model
from megapmc.parallel.layout import TensorLayout, param_layouts


@functools.lru_cache(maxsize=8)
def _layouts(config_json: str) -> dict[str, TensorLayout]:
    config = LlamaConfig.from_dict(json.loads(config_json))
    return param_layouts(build_model(config, device="meta"))  # TP = 1: layouts do not depend on TP


def model_layouts(config: LlamaConfig) -> dict[str, TensorLayout]:
    """Every megapmc parameter name -> its layout, as the model's layers declare it."""
    return _layouts(json.dumps(config.to_dict(), sort_keys=True))


def layout_of(spec: ParamSpec, config: LlamaConfig) -> TensorLayout:
    return model_layouts(config)[spec.megapmc]


def shard_param(spec: ParamSpec, full: list[torch.Tensor], config: LlamaConfig, tp: int) -> list[torch.Tensor]:
    """Full tensors (in ``spec.hf`` order) -> the megapmc parameter ``spec.megapmc`` on each TP rank."""
    config.check_tensor_parallel(tp)
    return layout_of(spec, config).split_parts(full, tp)


def merge_param(spec: ParamSpec, shards: list[torch.Tensor], config: LlamaConfig) -> list[torch.Tensor]:
    """Per-rank megapmc tensors -> the full tensors in ``spec.hf`` order (padding dropped; a replicated
    parameter that differs between ranks is a ValueError)."""
    return layout_of(spec, config).merge_parts(shards, spec.megapmc)


def full_shapes(spec: ParamSpec, config: LlamaConfig) -> list[tuple[int, ...]]:
    """Shapes of the full Hugging Face tensors of ``spec`` (exact vocabulary)."""
    return layout_of(spec, config).part_shapes()


def megapmc_shapes(config: LlamaConfig, tp: int) -> dict[str, tuple[int, ...]]:
    """Every megapmc parameter name -> its shape on one TP rank, in storage order."""
    return {spec.megapmc: layout_of(spec, config).local_shape(tp) for spec in all_params(config.num_layers)}


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
