"""SwiGLU on the fused gate/up projection: ``[..., 2f] = [gate; up] -> silu(gate) · up  [..., f]``.

Backends: ``torch`` (reference), ``compile``, ``liger`` (liger-kernel's fused SiLU·mul). Each loader
returns ``swiglu(gate_up [..., 2f]) -> [..., f]`` or raises ImportError.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def swiglu_reference(gate_up: torch.Tensor) -> torch.Tensor:
    gate, up = gate_up.chunk(2, dim=-1)  # [..., 2f] -> 2 × [..., f] (views)
    return F.silu(gate) * up


def _load_liger():
    from liger_kernel.ops.swiglu import LigerSiLUMulFunction

    def swiglu(gate_up):
        gate, up = gate_up.chunk(2, dim=-1)
        return LigerSiLUMulFunction.apply(gate, up)

    return swiglu


BACKENDS = {
    "torch": lambda: swiglu_reference,
    "compile": lambda: torch.compile(swiglu_reference),
    "liger": _load_liger,
}
