"""RMSNorm: ``y = w · x / sqrt(mean(x²) + eps)``, normalised in fp32 and cast back before the weight
multiplies (Hugging Face LLaMA's casting, so logits match ``LlamaForCausalLM``).

Backends: ``torch`` (the reference), ``compile`` (the reference under ``torch.compile``), ``liger``
(liger-kernel's Triton kernel), ``apex`` (apex's fused CUDA kernel), ``te`` (transformer-engine's
``transformer_engine.pytorch.RMSNorm`` module, its public API). Each loader returns a function
``rms_norm(x [..., h], weight [h], eps) -> [..., h]`` or raises ImportError.
"""
from __future__ import annotations

import torch
from torch.func import functional_call


def rms_norm_reference(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    x32 = x.float()
    x32 = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + eps)
    return weight * x32.to(x.dtype)


def _load_liger():
    from liger_kernel.ops.rms_norm import LigerRMSNormFunction

    def rms_norm(x, weight, eps):
        # offset 0 (y = w·x̂), "llama" casting (normalise in fp32, cast before the weight)
        return LigerRMSNormFunction.apply(x, weight, eps, 0.0, "llama", False)

    return rms_norm


def _load_apex():
    from apex.normalization.fused_layer_norm import fused_rms_norm_affine

    def rms_norm(x, weight, eps):
        return fused_rms_norm_affine(x, weight, weight.shape, eps)

    return rms_norm


def _load_te():
    import transformer_engine.pytorch as te

    modules: dict[tuple, torch.nn.Module] = {}

    def rms_norm(x, weight, eps):
        # TE's public RMSNorm is a module that owns its weight. The model keeps its own
        # ``input_layernorm.weight`` (names, checkpoints, sequence-parallel gradient all-reduce unchanged),
        # so each call runs TE's module with that weight swapped in; gradients flow to the model's weight.
        # TE multiplies by the weight in fp32 before casting (HF casts first): bf16 rounding apart, equal.
        key = (weight.shape[0], eps, x.device, weight.dtype)
        if key not in modules:  # params_dtype: TE 1.x's name, still accepted by 2.x
            modules[key] = te.RMSNorm(weight.shape[0], eps=eps, device=x.device, params_dtype=weight.dtype)
        return functional_call(modules[key], {"weight": weight}, (x,))

    return rms_norm


BACKENDS = {
    "torch": lambda: rms_norm_reference,
    "compile": lambda: torch.compile(rms_norm_reference),
    "liger": _load_liger,
    "apex": _load_apex,
    "te": _load_te,
}
