"""Causal self-attention cores, with grouped-query attention and packed samples (``segment_ids``).

Every backend is an object with two methods, so per-batch mask preparation happens once per forward
(not once per layer):

* ``prepare(segment_ids [b, s] | None, seq_length, device) -> mask``: whatever the backend needs to keep attention
  causal and inside each packed sample;
* ``__call__(q [s, b, nq, d], k [s, b, nkv, d], v [s, b, nkv, d], mask) -> [s, b, nq·d]``;
* ``decode(q [s, b, nq, d], k [b, nkv, L + s, d], v [b, nkv, L + s, d], mask [b, 1, s, L + s]) -> [s, b, nq·d]``:
  the new tokens' queries over an inference cache (``megapmc.model.inference``), the boolean mask built by
  the cache (causal, left padding masked out).

Backends: ``math`` (explicit softmax in fp32: the reference), ``sdpa`` (PyTorch's
``scaled_dot_product_attention``, which picks its flash / memory-efficient kernels on CUDA and its fused
CPU kernel here; ``is_causal`` when samples are not packed), ``flash`` (the flash-attn package; varlen
when samples are packed; decoding runs on SDPA, see ``FlashAttention.decode``).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def segment_causal_mask(segment_ids: torch.Tensor | None, seq_length: int, device) -> torch.Tensor:
    """Boolean ``[b|1, 1, s, s]``, True where query ``i`` may attend key ``j``: ``j <= i`` and, with
    ``segment_ids``, both in the same sample."""
    causal = torch.ones(seq_length, seq_length, dtype=torch.bool, device=device).tril_()
    if segment_ids is None:
        return causal[None, None]
    same = segment_ids.unsqueeze(2) == segment_ids.unsqueeze(1)  # [b, s, s]
    return (same & causal).unsqueeze(1)


def _to_bnsd(x: torch.Tensor) -> torch.Tensor:
    return x.permute(1, 2, 0, 3)  # [s, b, n, d] -> [b, n, s, d] (a view)


def _from_bnsd(x: torch.Tensor) -> torch.Tensor:
    b, n, s, d = x.shape
    return x.permute(2, 0, 1, 3).reshape(s, b, n * d)  # [b, n, s, d] -> [s, b, n·d]


def _sdpa_over_cache(q, k, v, mask):
    out = F.scaled_dot_product_attention(_to_bnsd(q), k, v, attn_mask=mask,
                                         enable_gqa=q.shape[2] != k.shape[1])  # [b, nq, s, d]
    return _from_bnsd(out)  # [s, b, nq·d]


class MathAttention:
    """The reference: scores, mask and softmax spelled out in fp32; KV heads repeated for GQA."""

    name = "math"

    def prepare(self, segment_ids, seq_length, device):
        return segment_causal_mask(segment_ids, seq_length, device)

    def __call__(self, q, k, v, mask):
        return self.decode(q, _to_bnsd(k), _to_bnsd(v), mask)

    def decode(self, q, k, v, mask):
        groups, dtype = q.shape[2] // k.shape[1], q.dtype
        q, k, v = _to_bnsd(q).float(), k.float(), v.float()
        k = k.repeat_interleave(groups, dim=1)  # [b, nkv, t, d] -> [b, nq, t, d]
        v = v.repeat_interleave(groups, dim=1)
        scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])  # [b, nq, s, t]
        scores = scores.masked_fill(~mask, float("-inf"))
        out = torch.softmax(scores, dim=-1) @ v  # [b, nq, s, d]
        return _from_bnsd(out).to(dtype)


class SDPAAttention:
    """``torch.nn.functional.scaled_dot_product_attention``: ``is_causal`` without packing (no mask
    tensor at all), a boolean ``[b, 1, s, s]`` mask with it."""

    name = "sdpa"

    def prepare(self, segment_ids, seq_length, device):
        if segment_ids is None:
            return None
        return segment_causal_mask(segment_ids, seq_length, segment_ids.device)

    def __call__(self, q, k, v, mask):
        gqa = q.shape[2] != k.shape[2]
        q, k, v = _to_bnsd(q), _to_bnsd(k), _to_bnsd(v)
        if mask is None:
            out = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=gqa)
        else:
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=gqa)
        return _from_bnsd(out)  # [b, nq, s, d] -> [s, b, nq·d]

    def decode(self, q, k, v, mask):
        return _sdpa_over_cache(q, k, v, mask)


class FlashAttention:
    """flash-attn 2/3 (``flash_attn_func``; ``flash_attn_varlen_func`` over cumulative sample lengths when
    samples are packed). Takes ``[b, s, n, d]`` and handles GQA natively."""

    name = "flash"

    def __init__(self):
        from flash_attn import flash_attn_func, flash_attn_varlen_func

        self._func = flash_attn_func
        self._varlen = flash_attn_varlen_func

    def prepare(self, segment_ids, seq_length, device):
        if segment_ids is None:
            return None
        b, s = segment_ids.shape
        flat = segment_ids.reshape(-1)  # [b·s]
        starts = torch.ones_like(flat, dtype=torch.bool)
        starts[1:] = flat[1:] != flat[:-1]
        starts[::s] = True  # every row starts a new sample
        boundaries = torch.nonzero(starts).flatten()
        cu_seqlens = torch.cat([boundaries, boundaries.new_tensor([b * s])]).to(torch.int32)
        max_seqlen = int((cu_seqlens[1:] - cu_seqlens[:-1]).max())
        return cu_seqlens, max_seqlen

    def __call__(self, q, k, v, mask):
        s, b, nq, d = q.shape
        q, k, v = q.transpose(0, 1), k.transpose(0, 1), v.transpose(0, 1)  # [s, b, n, d] -> [b, s, n, d]
        if mask is None:
            out = self._func(q, k, v, causal=True)  # [b, s, nq, d]
        else:
            cu_seqlens, max_seqlen = mask
            out = self._varlen(
                q.reshape(b * s, nq, d), k.reshape(b * s, -1, d), v.reshape(b * s, -1, d),
                cu_seqlens, cu_seqlens, max_seqlen, max_seqlen, causal=True,
            ).view(b, s, nq, d)
        return out.transpose(0, 1).reshape(s, b, nq * d)  # [b, s, nq, d] -> [s, b, nq·d]

    def decode(self, q, k, v, mask):
        # flash-attn's cache API (flash_attn_with_kvcache) takes right-aligned per-row lengths, not the
        # left-padded rows the cache holds; SDPA with the cache's mask runs its own flash/efficient kernel.
        return _sdpa_over_cache(q, k, v, mask)


BACKENDS = {
    "math": MathAttention,
    "sdpa": SDPAAttention,
    "flash": FlashAttention,
}
