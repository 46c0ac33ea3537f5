"""Rotary position embedding in Hugging Face's layout: dimension ``i`` pairs with ``i + d/2``
(``rotate_half``); ``megapmc.convert.rotary_layout`` maps Meta's interleaved layout onto it.

Every backend takes ``q [s, b, nq, d]``, ``k [s, b, nkv, d]`` and ``cos``/``sin`` of shape ``[s, b|1, 1, d]``
(already in q's dtype) and returns the rotated ``(q, k)`` in the same layout.
Backends: ``torch`` (reference), ``compile``, ``liger`` (liger-kernel's Triton kernel).
"""
from __future__ import annotations

import torch


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


def rope_reference(q, k, cos, sin):
    return q * cos + rotate_half(q) * sin, k * cos + rotate_half(k) * sin


def _load_liger():
    from liger_kernel.ops.rope import LigerRopeFunction

    def rope(q, k, cos, sin):
        # liger wants q [b, n, s, d] and cos [b|1, s, d]
        cos_bsd = cos.squeeze(2).transpose(0, 1).contiguous()  # [s, b|1, 1, d] -> [b|1, s, d]
        sin_bsd = sin.squeeze(2).transpose(0, 1).contiguous()
        q, k = LigerRopeFunction.apply(q.permute(1, 2, 0, 3), k.permute(1, 2, 0, 3), cos_bsd, sin_bsd)
        return q.permute(2, 0, 1, 3), k.permute(2, 0, 1, 3)  # [b, n, s, d] -> [s, b, n, d]

    return rope


BACKENDS = {
    "torch": lambda: rope_reference,
    "compile": lambda: torch.compile(rope_reference),
    "liger": _load_liger,
}
