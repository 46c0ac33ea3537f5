"""Choose each op's backend once, when the model is built: never by branches inside ``forward``.

``KernelConfig(attention_backend, kernel_backend)`` mirrors the ``--attention-backend`` and
``--kernel-backend`` flags. ``auto`` picks, per op, the first backend in that op's preference order that
imports and suits the device; on the CPU that is always the plain PyTorch reference (SDPA for attention).
An explicitly requested backend that is missing or cannot run on the device falls back to the reference
with a one-line notice: a missing package never stops a run.
"""
from __future__ import annotations

import functools
import logging
from dataclasses import dataclass, field
from typing import Callable

import torch

from megapmc.kernels import attention, cross_entropy, rmsnorm, rope, swiglu

logger = logging.getLogger("megapmc.kernels")

ATTENTION_BACKENDS = ("auto", "flash", "sdpa", "math")
KERNEL_BACKENDS = ("auto", "te", "liger", "apex", "compile", "torch")

# Backends that need a CUDA device (Triton / CUDA extensions).
_CUDA_ONLY = {"flash", "liger", "apex", "te"}
# Which pip package provides each backend, for the notice.
_PACKAGE = {"flash": "flash-attn", "liger": "liger-kernel", "apex": "apex", "te": "transformer-engine"}

# ``auto`` preference order on CUDA, per op (the reference comes last everywhere).
_AUTO_CUDA = {
    "attention": ("flash", "sdpa"),
    "rms_norm": ("te", "liger", "apex", "compile", "torch"),
    "swiglu": ("liger", "compile", "torch"),
    "rope": ("liger", "compile", "torch"),
    "cross_entropy": ("liger", "single_pass"),
}
_AUTO_CPU = {"attention": ("sdpa",), "rms_norm": ("torch",), "swiglu": ("torch",), "rope": ("torch",),
             "cross_entropy": ("single_pass",)}
_REFERENCE = {"attention": "math", "rms_norm": "torch", "swiglu": "torch", "rope": "torch",
              "cross_entropy": "torch"}
_MODULES = {"attention": attention, "rms_norm": rmsnorm, "swiglu": swiglu, "rope": rope,
            "cross_entropy": cross_entropy}


@dataclass
class KernelConfig:
    attention_backend: str = "auto"
    kernel_backend: str = "auto"

    def __post_init__(self):
        if self.attention_backend not in ATTENTION_BACKENDS:
            raise ValueError(f"--attention-backend {self.attention_backend!r}: choose one of {ATTENTION_BACKENDS}")
        if self.kernel_backend not in KERNEL_BACKENDS:
            raise ValueError(f"--kernel-backend {self.kernel_backend!r}: choose one of {KERNEL_BACKENDS}")


@dataclass(frozen=True)
class Kernels:
    """The chosen implementation of every op, and the name of each choice (for logs and benchmarks)."""

    attention: object
    rms_norm: Callable
    swiglu: Callable
    rope: Callable
    cross_entropy: Callable
    names: dict = field(default_factory=dict)

    @classmethod
    def reference(cls) -> "Kernels":
        """The plain PyTorch path that every other backend is tested against."""
        return select_kernels(KernelConfig(attention_backend="math", kernel_backend="torch"), "cpu")


def _try_load(op: str, name: str, device: torch.device):
    """The op's implementation from backend ``name``, or ``None`` with the reason."""
    if name in _CUDA_ONLY and device.type != "cuda":
        return None, f"{name} needs a CUDA device"
    try:
        return _MODULES[op].BACKENDS[name](), None
    except ImportError:
        return None, f"{_PACKAGE.get(name, name)} is not installed"
    except KeyError:
        return None, f"{name} has no {op} kernel"


def _select_op(op: str, requested: str, device: torch.device, notices: list[str]):
    if requested == "auto":
        order = (_AUTO_CUDA if device.type == "cuda" else _AUTO_CPU)[op]
        missing = []
        for name in order:
            impl, why = _try_load(op, name, device)
            if impl is not None:
                # No fused kernel at all: worth telling the user which packages would give one.
                if name not in _PACKAGE:
                    notices.extend(missing)
                return name, impl
            if name in _PACKAGE:
                missing.append(f"{op}: {why}")
        notices.extend(missing)
        requested = _REFERENCE[op]
    impl, why = _try_load(op, requested, device)
    if impl is not None:
        return requested, impl
    fallback = _REFERENCE[op] if op != "attention" else "sdpa"
    notices.append(f"{op}: {why}; using {fallback}")
    return fallback, _try_load(op, fallback, device)[0]


@functools.lru_cache(maxsize=None)
def _notice(message: str) -> None:
    """Log each distinct notice once per process (models are often built several times)."""
    logger.warning(message)


def select_kernels(config: KernelConfig, device) -> Kernels:
    """Resolve ``config`` for ``device`` (meta counts as CPU); log one line if anything was missing."""
    device = torch.device(device)
    notices: list[str] = []
    names, impls = {}, {}
    for op in _MODULES:
        requested = config.attention_backend if op == "attention" else config.kernel_backend
        names[op], impls[op] = _select_op(op, requested, device, notices)
    if notices:
        _notice(f"megapmc kernels: {'; '.join(notices)} (chosen: {', '.join(f'{k}={v}' for k, v in names.items())})")
    return Kernels(names=names, **impls)
