"""Choose each op's backend once, when the model is built: never by branches inside ``forward``.

``KernelConfig(attention_backend, kernel_backend)`` mirrors the ``--attention-backend`` and
``--kernel-backend`` flags. ``auto`` picks, per op, the first backend in that op's preference order that
imports and suits the device; on the CPU that is always the plain PyTorch reference (SDPA for attention),
and what was missing is said in one line. An explicitly requested backend that is not installed or cannot
run on the device is an error (``KernelUnavailableError``) naming the flag and what to install: a run
never silently trains on other kernels than the ones asked for. A backend that has no kernel for an op at
all (``--kernel-backend te`` offers only RMSNorm) runs that op on its reference.

The public API for tools and tests: ``OPS``, ``REFERENCE`` (each op's reference backend),
``backend_names(op)``, ``load_backend(op, name, device)``.
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
# Which pip package provides each backend, for the messages.
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
_MODULES = {"attention": attention, "rms_norm": rmsnorm, "swiglu": swiglu, "rope": rope,
            "cross_entropy": cross_entropy}

OPS = tuple(_MODULES)
REFERENCE = {"attention": "math", "rms_norm": "torch", "swiglu": "torch", "rope": "torch",
             "cross_entropy": "torch"}


class KernelUnavailableError(RuntimeError):
    """An explicitly requested backend cannot run here (package missing, or not a CUDA device)."""


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


def backend_names(op: str) -> tuple[str, ...]:
    """Every backend ``op`` has a kernel for, the reference included."""
    return tuple(_MODULES[op].BACKENDS)


def load_backend(op: str, name: str, device) -> tuple[object | None, str | None]:
    """``(implementation, None)`` of ``op`` from backend ``name`` on ``device``, or ``(None, reason)``."""
    device = torch.device(device)
    if name not in _MODULES[op].BACKENDS:
        return None, f"{name} has no {op} kernel"
    if name in _CUDA_ONLY and device.type != "cuda":
        return None, f"{name} needs a CUDA device"
    try:
        return _MODULES[op].BACKENDS[name](), None
    except ImportError:
        return None, f"{_PACKAGE.get(name, name)} is not installed"


def _select_auto(op: str, device: torch.device, notices: list[str]):
    missing = []
    for name in (_AUTO_CUDA if device.type == "cuda" else _AUTO_CPU)[op]:
        impl, why = load_backend(op, name, device)
        if impl is not None:
            # No fused kernel at all: worth telling the user which packages would give one.
            if name not in _PACKAGE:
                notices.extend(missing)
            return name, impl
        if name in _PACKAGE:
            missing.append(f"{op}: {why}")
    raise AssertionError(f"the last auto choice for {op} is a reference and always loads")


def _select_op(op: str, requested: str, device: torch.device, notices: list[str]):
    if requested == "auto":
        return _select_auto(op, device, notices)
    if requested not in _MODULES[op].BACKENDS:  # e.g. --kernel-backend apex for SwiGLU
        return REFERENCE[op], load_backend(op, REFERENCE[op], device)[0]
    impl, why = load_backend(op, requested, device)
    if impl is None:
        flag = "--attention-backend" if op == "attention" else "--kernel-backend"
        fix = (f"pip install {_PACKAGE[requested]}" if requested in _PACKAGE and "installed" in why
               else "run on a CUDA device")
        raise KernelUnavailableError(f"{flag} {requested}: {why} ({op}); {fix}, or pass {flag} auto")
    return requested, impl


@functools.lru_cache(maxsize=None)
def _notice(message: str) -> None:
    """Log each distinct notice once per process (models are often built several times)."""
    logger.warning(message)


def select_kernels(config: KernelConfig, device) -> Kernels:
    """Resolve ``config`` for ``device`` (meta counts as CPU). ``auto`` logs one line if a fused kernel
    was missing; an explicit backend that cannot run raises ``KernelUnavailableError``."""
    device = torch.device(device)
    notices: list[str] = []
    names, impls = {}, {}
    for op in OPS:
        requested = config.attention_backend if op == "attention" else config.kernel_backend
        names[op], impls[op] = _select_op(op, requested, device, notices)
    if notices:
        _notice(f"megapmc kernels: {'; '.join(notices)} (chosen: {', '.join(f'{k}={v}' for k, v in names.items())})")
    return Kernels(names=names, **impls)
