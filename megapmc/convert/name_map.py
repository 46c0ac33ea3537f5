"""The one table of parameter names: megapmc ⇄ Hugging Face ⇄ Meta, and how each tensor is sharded.

A megapmc parameter may fuse several Hugging Face / Meta tensors (``qkv_proj`` is ``q_proj; k_proj;
v_proj``, ``gate_up_proj`` is ``gate_proj; up_proj``); the tuples below list them in fusion order.
``{i}`` stands for the layer index. Every other module looks names up here instead of spelling them.
"""
from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class TPSplit(str, Enum):
    """How megapmc splits a parameter across tensor-parallel ranks (docs/architecture.md)."""

    VOCAB_ROWS = "vocab_rows"  # rows = padded vocabulary, contiguous slice per rank
    QKV = "qkv"  # rows, per rank [q_local; k_local; v_local]
    GATE_UP = "gate_up"  # rows, per rank [gate_local; up_local]
    COLUMNS = "columns"  # dim 1, contiguous slice per rank (row-parallel linears)
    REPLICATED = "replicated"


@dataclass(frozen=True)
class ParamSpec:
    megapmc: str
    hf: tuple[str, ...]
    meta: tuple[str, ...]
    tp_split: TPSplit
    # Dimension along which Meta's model-parallel shards (consolidated.NN.pth) are concatenated.
    meta_mp_dim: int | None

    def format(self, layer: int | None) -> "ParamSpec":
        """This spec with ``{i}`` replaced by ``layer`` (global parameters are returned unchanged)."""
        if layer is None:
            return self
        return ParamSpec(
            self.megapmc.format(i=layer),
            tuple(n.format(i=layer) for n in self.hf),
            tuple(n.format(i=layer) for n in self.meta),
            self.tp_split,
            self.meta_mp_dim,
        )


EMBEDDING = ParamSpec("embed_tokens.weight", ("model.embed_tokens.weight",), ("tok_embeddings.weight",),
                      TPSplit.VOCAB_ROWS, meta_mp_dim=1)  # Meta's ParallelEmbedding splits the hidden dim
FINAL_NORM = ParamSpec("norm.weight", ("model.norm.weight",), ("norm.weight",), TPSplit.REPLICATED, None)
OUTPUT_LAYER = ParamSpec("lm_head.weight", ("lm_head.weight",), ("output.weight",), TPSplit.VOCAB_ROWS, 0)

LAYER_PARAMS: tuple[ParamSpec, ...] = (
    ParamSpec("layers.{i}.input_layernorm.weight", ("model.layers.{i}.input_layernorm.weight",),
              ("layers.{i}.attention_norm.weight",), TPSplit.REPLICATED, None),
    ParamSpec("layers.{i}.self_attn.qkv_proj.weight",
              ("model.layers.{i}.self_attn.q_proj.weight", "model.layers.{i}.self_attn.k_proj.weight",
               "model.layers.{i}.self_attn.v_proj.weight"),
              ("layers.{i}.attention.wq.weight", "layers.{i}.attention.wk.weight",
               "layers.{i}.attention.wv.weight"),
              TPSplit.QKV, 0),
    ParamSpec("layers.{i}.self_attn.o_proj.weight", ("model.layers.{i}.self_attn.o_proj.weight",),
              ("layers.{i}.attention.wo.weight",), TPSplit.COLUMNS, 1),
    ParamSpec("layers.{i}.post_attention_layernorm.weight", ("model.layers.{i}.post_attention_layernorm.weight",),
              ("layers.{i}.ffn_norm.weight",), TPSplit.REPLICATED, None),
    ParamSpec("layers.{i}.mlp.gate_up_proj.weight",
              ("model.layers.{i}.mlp.gate_proj.weight", "model.layers.{i}.mlp.up_proj.weight"),
              ("layers.{i}.feed_forward.w1.weight", "layers.{i}.feed_forward.w3.weight"),
              TPSplit.GATE_UP, 0),
    ParamSpec("layers.{i}.mlp.down_proj.weight", ("model.layers.{i}.mlp.down_proj.weight",),
              ("layers.{i}.feed_forward.w2.weight",), TPSplit.COLUMNS, 1),
)

# Buffers some checkpoints carry that are recomputed at load time, never converted.
IGNORED_HF_SUFFIXES = ("rotary_emb.inv_freq",)
IGNORED_META_NAMES = ("rope.freqs",)


def unit_params(unit: str | int) -> list[ParamSpec]:
    """The parameters of one conversion unit: ``"embedding"``, a layer index, or ``"final"``
    (final norm and output layer). Conversion streams unit by unit, in this order."""
    if unit == "embedding":
        return [EMBEDDING]
    if unit == "final":
        return [FINAL_NORM, OUTPUT_LAYER]
    return [spec.format(unit) for spec in LAYER_PARAMS]


def conversion_units(num_layers: int) -> list[str | int]:
    return ["embedding", *range(num_layers), "final"]


def all_params(num_layers: int) -> list[ParamSpec]:
    return [spec for unit in conversion_units(num_layers) for spec in unit_params(unit)]


def hf_names(num_layers: int) -> list[str]:
    """Every Hugging Face tensor name of a ``LlamaForCausalLM`` in storage order."""
    return [name for spec in all_params(num_layers) for name in spec.hf]
