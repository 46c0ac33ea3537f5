"""Run-time choice of attention / RMSNorm / SwiGLU / RoPE / cross-entropy backends; each op's plain
PyTorch version is the reference the others are tested against."""
from megapmc.kernels.registry import KernelConfig, Kernels, KernelUnavailableError, select_kernels

__all__ = ["KernelConfig", "KernelUnavailableError", "Kernels", "select_kernels"]
