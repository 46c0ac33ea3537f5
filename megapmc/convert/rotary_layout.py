"""The one permutation between Meta's and Hugging Face's rotary layouts of the q/k projection rows.

Meta's original LLaMA rotates interleaved pairs of each head's dimensions, ``(2j, 2j+1)``; Hugging Face
(and megapmc, which stores Hugging Face's layout) rotates ``(j, j + d/2)`` (rotate-half). Hugging Face's
converter therefore permutes the output rows of ``wq`` and ``wk``, head by head, so that the rotate-half
attention computes exactly what Meta's interleaved one did. With grouped-query attention ``wk`` has
``num_key_value_heads`` heads, so callers pass the head count of the tensor they permute.

A wrong permutation still yields fluent-looking text, which is why only a logits comparison against the
reference implementation (tests/convert/test_convert_meta.py, ``megapmc.convert.verify``) proves it.
"""
from __future__ import annotations

import torch


def _check(weight: torch.Tensor, num_heads: int) -> int:
    rows = weight.shape[0]
    if rows % num_heads or (rows // num_heads) % 2:
        raise ValueError(f"q/k weight with {rows} rows cannot be split into {num_heads} heads of even size")
    return rows // num_heads


def meta_to_hf_rows(weight: torch.Tensor, num_heads: int) -> torch.Tensor:
    """Rows of Meta's ``wq``/``wk`` ``[heads·d, h]`` reordered into Hugging Face's rotate-half layout:
    within each head, the even rows (pair firsts) come first, then the odd rows."""
    d = _check(weight, num_heads)
    rest = weight.shape[1:]
    # [heads, d/2, 2, *rest] -> [heads, 2, d/2, *rest]
    return weight.reshape(num_heads, d // 2, 2, *rest).transpose(1, 2).reshape(weight.shape).contiguous()


def hf_to_meta_rows(weight: torch.Tensor, num_heads: int) -> torch.Tensor:
    """Inverse of :func:`meta_to_hf_rows`: rows back to Meta's interleaved pairs."""
    d = _check(weight, num_heads)
    rest = weight.shape[1:]
    # [heads, 2, d/2, *rest] -> [heads, d/2, 2, *rest]
    return weight.reshape(num_heads, 2, d // 2, *rest).transpose(1, 2).reshape(weight.shape).contiguous()
