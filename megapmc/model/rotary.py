"""Rotary position embedding tables (LLaMA's convention: theta 10000, Hugging Face's rotate-half layout).

The cos/sin tables are computed once per (device, dtype) in fp32 and cast, exactly as Hugging Face's
``LlamaRotaryEmbedding`` does, so that logits match ``LlamaForCausalLM``. They are plain attributes, not
buffers: they never enter a checkpoint and a model built on the meta device needs nothing recomputed.
The rotation itself is a kernel (``megapmc.kernels.rope``).
"""
from __future__ import annotations

import torch
from torch import nn


class RotaryEmbedding(nn.Module):
    def __init__(self, head_dim: int, theta: float = 10000.0, max_position_embeddings: int = 2048):
        super().__init__()
        if head_dim % 2:
            raise ValueError(f"rotary embeddings need an even head dimension, got {head_dim}")
        self.head_dim = head_dim
        self.theta = theta
        self.max_position_embeddings = max_position_embeddings
        self._tables: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}

    def _table(self, length: int, device: torch.device, dtype: torch.dtype):
        key = (device, dtype)
        cached = self._tables.get(key)
        if cached is None or cached[0].shape[0] < length:
            length = max(length, self.max_position_embeddings)
            exponent = torch.arange(0, self.head_dim, 2, dtype=torch.int64).float() / self.head_dim
            inv_freq = (1.0 / self.theta ** exponent).to(device)  # [d/2]
            positions = torch.arange(length, device=device, dtype=torch.float32)
            freqs = torch.outer(positions, inv_freq)  # [L, d/2]
            emb = torch.cat((freqs, freqs), dim=-1)  # [L, d], rotate-half layout
            cached = (emb.cos().to(dtype), emb.sin().to(dtype))
            self._tables[key] = cached
        return cached

    def forward(self, position_ids: torch.Tensor | None, seq_length: int, device, dtype):
        """``(cos, sin)`` of shape ``[s, 1, 1, d]`` for positions ``0..s-1``, or ``[s, b, 1, d]`` for
        ``position_ids [b, s]`` (which must be below ``max(max_position_embeddings, s)``)."""
        if position_ids is None:
            cos, sin = self._table(seq_length, device, dtype)
            return cos[:seq_length, None, None], sin[:seq_length, None, None]  # [s, 1, 1, d] (views)
        cos, sin = self._table(seq_length, device, dtype)
        index = position_ids.t()  # [b, s] -> [s, b]
        return cos[index].unsqueeze(2), sin[index].unsqueeze(2)  # [s, b, 1, d]

    def extra_repr(self) -> str:
        return f"head_dim={self.head_dim}, theta={self.theta}"
