"""Hold every kernel backend to the plain PyTorch reference: relative error of the outputs and of the input
gradients, the reference run in fp32 on the same inputs. Used by the kernel tests and benchmarks/gpu_check.py
(test tooling, so it lives here and may use the model's rotary table; the registry's public API is all it
needs from ``megapmc.kernels``).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from megapmc.kernels.registry import OPS, REFERENCE, backend_names, load_backend
from megapmc.model.rotary import RotaryEmbedding


@dataclass
class Shapes:
    batch: int = 2
    seq: int = 256
    heads: int = 8
    kv_heads: int = 4
    head_dim: int = 64
    hidden: int = 512
    ffn: int = 1376
    vocab: int = 4096


def relative_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    actual, expected = actual.double(), expected.double()
    return float((actual - expected).norm() / expected.norm().clamp_min(1e-30))


def _inputs(op: str, shapes: Shapes, device, dtype, packed: bool):
    g = torch.Generator(device="cpu").manual_seed(0)

    def randn(*shape, scale=1.0):
        return (torch.randn(*shape, generator=g) * scale).to(device=device, dtype=dtype)

    s, b = shapes.seq, shapes.batch
    if op == "attention":
        segment_ids = None
        if packed:  # two samples per row, split at different points
            segment_ids = torch.zeros(b, s, dtype=torch.long)
            for row in range(b):
                segment_ids[row, s // (row + 3):] = 1
            segment_ids = segment_ids.to(device)
        return [randn(s, b, shapes.heads, shapes.head_dim), randn(s, b, shapes.kv_heads, shapes.head_dim),
                randn(s, b, shapes.kv_heads, shapes.head_dim)], {"segment_ids": segment_ids}
    if op == "rms_norm":
        return [randn(s, b, shapes.hidden), 1.0 + randn(shapes.hidden, scale=0.1)], {}
    if op == "swiglu":
        return [randn(s, b, 2 * shapes.ffn)], {}
    if op == "rope":
        cos, sin = RotaryEmbedding(shapes.head_dim)(None, s, device, dtype)
        return [randn(s, b, shapes.heads, shapes.head_dim), randn(s, b, shapes.kv_heads, shapes.head_dim)], \
            {"cos": cos, "sin": sin}
    if op == "cross_entropy":
        target = torch.randint(0, shapes.vocab, (s, b), generator=g).to(device)
        return [randn(s, b, shapes.vocab, scale=3.0)], {"target": target}
    raise ValueError(f"unknown op {op!r}")


def _call(op: str, impl, tensors, extra):
    if op == "attention":
        q, k, v = tensors
        mask = impl.prepare(extra["segment_ids"], q.shape[0], q.device)
        return [impl(q, k, v, mask)]
    if op == "rms_norm":
        return [impl(tensors[0], tensors[1], 1e-5)]
    if op == "swiglu":
        return [impl(tensors[0])]
    if op == "rope":
        return list(impl(tensors[0], tensors[1], extra["cos"].to(tensors[0].dtype),
                         extra["sin"].to(tensors[0].dtype)))
    return [impl(tensors[0], extra["target"])]


def _forward_backward(op, impl, tensors, extra):
    leaves = [t.detach().clone().requires_grad_(True) for t in tensors]
    outs = _call(op, impl, leaves, extra)
    g = torch.Generator(device="cpu").manual_seed(1)
    grads_out = [torch.randn(o.shape, generator=g).to(o.device, o.dtype) for o in outs]
    torch.autograd.backward(outs, grads_out)
    return [o.detach() for o in outs], [leaf.grad for leaf in leaves]


def compare(op: str, backend: str, device, dtype=torch.float32, shapes: Shapes | None = None,
            packed: bool = False, oracle=None) -> dict:
    """``{"forward": err, "backward": err}`` (max over outputs / input gradients) of ``backend`` against the
    reference run in fp32, or ``{"skipped": reason}`` when the backend cannot run here. ``oracle``, a
    callable with the backend's signature, replaces the reference and runs in float64 (to hold the
    reference itself to an independent formula)."""
    shapes = shapes or Shapes()
    device = torch.device(device)
    impl, why = load_backend(op, backend, device)
    if impl is None:
        return {"skipped": why}
    reference = oracle or load_backend(op, REFERENCE[op], torch.device("cpu"))[0]
    ref_dtype = torch.float64 if oracle else torch.float32
    tensors, extra = _inputs(op, shapes, device, dtype, packed)
    out, grads = _forward_backward(op, impl, tensors, extra)
    ref_extra = {k: (v.to(ref_dtype) if torch.is_tensor(v) and v.is_floating_point() else v)
                 for k, v in extra.items()}
    ref_out, ref_grads = _forward_backward(op, reference, [t.to(ref_dtype) for t in tensors], ref_extra)
    return {
        "forward": max(relative_error(a, e) for a, e in zip(out, ref_out)),
        "backward": max(relative_error(a, e) for a, e in zip(grads, ref_grads)),
    }


def all_backends() -> list[tuple[str, str]]:
    """(op, backend) for every backend of every op, references included."""
    return [(op, name) for op in OPS for name in backend_names(op)]

