"""Incremental decoding: a key/value cache and the attention mask over it.

``LlamaModel.forward(input_ids, position_ids=..., inference_cache=cache, padding_mask=...)`` runs only the
new tokens: every layer appends their keys and values to ``cache`` and attends over the cached prefix plus
the new tokens (causal among the new ones), through the chosen attention backend's ``decode``
(``megapmc.kernels.attention``). A prompt is prefilled in one call, then each generated token
is one call of length 1. Each TP rank caches its own KV heads (``nkv/tp``), so the cache is as sharded as
the weights and GQA keeps ``nkv/tp`` (not ``nq/tp``) heads per layer.

Rows of a batch share one write offset (``length``); prompts of different lengths are left-padded and the
padding is masked out of every later attention (``key_padding_mask``), with position ids counting only
real tokens, as Hugging Face's ``generate`` does.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class InferenceCache:
    """Per-layer ``key``/``value`` tensors ``[b, max_length, nkv/tp, d]``, the number of positions filled
    (``length``, the same for every row) and which of them are real tokens (``key_padding_mask
    [b, max_length]``, True for a real token)."""

    key: list[torch.Tensor]
    value: list[torch.Tensor]
    key_padding_mask: torch.Tensor
    length: int = 0

    def __post_init__(self):
        if len(self.key) != len(self.value):
            raise ValueError(f"InferenceCache: {len(self.key)} key tensors but {len(self.value)} value tensors")

    @classmethod
    def allocate(cls, model, batch_size: int, max_length: int) -> "InferenceCache":
        """An empty cache for ``model`` (a ``LlamaModel`` on this TP rank), on its device and in its dtype."""
        limit = model.config.max_position_embeddings
        if not 0 < max_length <= limit:
            raise ValueError(f"inference cache length {max_length} must be in 1..{limit} "
                             f"(the model's max_position_embeddings): shorten the prompt or --max-new-tokens")
        attn = model.layers[0].self_attn
        param = model.embed_tokens.weight
        shape = (batch_size, max_length, attn.num_local_kv_heads, attn.head_dim)
        n = len(model.layers)
        return cls(
            key=[torch.empty(shape, device=param.device, dtype=param.dtype) for _ in range(n)],
            value=[torch.empty(shape, device=param.device, dtype=param.dtype) for _ in range(n)],
            key_padding_mask=torch.zeros(batch_size, max_length, dtype=torch.bool, device=param.device),
        )

    @property
    def max_length(self) -> int:
        return self.key_padding_mask.shape[1]

    @property
    def batch_size(self) -> int:
        return self.key_padding_mask.shape[0]

    def prepare(self, padding_mask: torch.Tensor | None, seq_length: int) -> torch.Tensor:
        """Record the new tokens' padding and return the attention mask of this call, boolean
        ``[b, 1, s, length + s]``: query ``i`` (at cache position ``length + i``) sees every earlier real
        token and itself. A padding query sees only itself, so its softmax is never empty (no NaN); no real
        token ever attends to it."""
        b, start, end = self.batch_size, self.length, self.length + seq_length
        if end > self.max_length:
            raise ValueError(f"inference cache holds {self.max_length} positions: {start} filled, "
                             f"{seq_length} more do not fit; allocate a longer cache")
        if padding_mask is None:
            self.key_padding_mask[:, start:end] = True
        else:
            if padding_mask.shape != (b, seq_length):
                raise ValueError(f"padding_mask has shape {tuple(padding_mask.shape)}, expected {(b, seq_length)}")
            self.key_padding_mask[:, start:end] = padding_mask
        keys = torch.arange(end, device=self.key_padding_mask.device)  # [L + s]
        queries = keys[start:, None]  # [s, 1]
        causal = keys[None, :] <= queries  # [s, L + s]
        mask = causal[None] & self.key_padding_mask[:, None, :end]  # [b, s, L + s]
        mask |= keys[None, :] == queries  # every query sees itself
        return mask.unsqueeze(1)  # [b, 1, s, L + s]

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Write this call's ``k``/``v`` ``[s, b, nkv/tp, d]`` for ``layer`` and return the layer's keys and
        values so far, ``[b, nkv/tp, length + s, d]`` (views of the cache)."""
        start, end = self.length, self.length + k.shape[0]
        # detached: the cache outlives one call, and an autograd history would chain every step's graph
        self.key[layer][:, start:end] = k.detach().transpose(0, 1)  # [s, b, n, d] -> [b, s, n, d]
        self.value[layer][:, start:end] = v.detach().transpose(0, 1)
        return self.key[layer][:, :end].transpose(1, 2), self.value[layer][:, :end].transpose(1, 2)

    def advance(self, seq_length: int) -> None:
        """Mark ``seq_length`` more positions filled, once every layer has written them."""
        self.length += seq_length


def left_padded_positions(padding_mask: torch.Tensor) -> torch.Tensor:
    """Position ids ``[b, s]`` for left-padded rows (``padding_mask`` True for real tokens): each row's
    first real token is position 0; padding gets 0 (it is never attended to)."""
    return (padding_mask.long().cumsum(-1) - 1).clamp_(min=0)
