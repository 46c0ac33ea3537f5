"""The one table of parameter names: megapmc ⇄ Hugging Face ⇄ Meta.

A megapmc parameter may fuse several Hugging Face / Meta tensors (``qkv_proj`` is ``q_proj; k_proj;
v_proj``, ``gate_up_proj`` is ``gate_proj; up_proj``); the tuples below list them in fusion order, the
order of the layer's blocks. ``{i}`` stands for the layer index. Every other module looks names up here
instead of spelling them. How megapmc splits each parameter across TP ranks is not here: the layer that
owns it declares that (``megapmc.parallel.layout``), and ``convert.sharding`` reads it off the model.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ParamSpec:
    megapmc: str
    hf: tuple[str, ...]
    meta: tuple[str, ...]
    # Dimension along which Meta's model-parallel shards (consolidated.NN.pth) are concatenated: a fact
    # of Meta's format (its own ColumnParallelLinear / RowParallelLinear / ParallelEmbedding), not ours.
    meta_mp_dim: int | None
    # The first two tensors are q and k, whose rows Meta stores with rotary pairs interleaved
    # (``rotary_layout``).
    rotary: bool = False

    def format(self, layer: int | None) -> "ParamSpec":
        """This spec with ``{i}`` replaced by ``layer`` (global parameters are returned unchanged)."""
        if layer is None:
            return self
        return ParamSpec(
            self.megapmc.format(i=layer),
            tuple(n.format(i=layer) for n in self.hf),
            tuple(n.format(i=layer) for n in self.meta),
            self.meta_mp_dim,
            self.rotary,
        )


EMBEDDING = ParamSpec("embed_tokens.weight", ("model.embed_tokens.weight",), ("tok_embeddings.weight",),
                      meta_mp_dim=1)  # Meta's ParallelEmbedding splits the hidden dim
FINAL_NORM = ParamSpec("norm.weight", ("model.norm.weight",), ("norm.weight",), None)
OUTPUT_LAYER = ParamSpec("lm_head.weight", ("lm_head.weight",), ("output.weight",), 0)

LAYER_PARAMS: tuple[ParamSpec, ...] = (
    ParamSpec("layers.{i}.input_layernorm.weight", ("model.layers.{i}.input_layernorm.weight",),
              ("layers.{i}.attention_norm.weight",), None),
    ParamSpec("layers.{i}.self_attn.qkv_proj.weight",
              ("model.layers.{i}.self_attn.q_proj.weight", "model.layers.{i}.self_attn.k_proj.weight",
               "model.layers.{i}.self_attn.v_proj.weight"),
              ("layers.{i}.attention.wq.weight", "layers.{i}.attention.wk.weight",
               "layers.{i}.attention.wv.weight"),
              0, rotary=True),
    ParamSpec("layers.{i}.self_attn.o_proj.weight", ("model.layers.{i}.self_attn.o_proj.weight",),
              ("layers.{i}.attention.wo.weight",), 1),
    ParamSpec("layers.{i}.post_attention_layernorm.weight", ("model.layers.{i}.post_attention_layernorm.weight",),
              ("layers.{i}.ffn_norm.weight",), None),
    ParamSpec("layers.{i}.mlp.gate_up_proj.weight",
              ("model.layers.{i}.mlp.gate_proj.weight", "model.layers.{i}.mlp.up_proj.weight"),
              ("layers.{i}.feed_forward.w1.weight", "layers.{i}.feed_forward.w3.weight"),
              0),
    ParamSpec("layers.{i}.mlp.down_proj.weight", ("model.layers.{i}.mlp.down_proj.weight",),
              ("layers.{i}.feed_forward.w2.weight",), 1),
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
