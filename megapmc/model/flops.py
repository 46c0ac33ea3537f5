"""The one FLOPs formula of megapmc, and model FLOPs utilisation (MFU) against a named device peak.

Training FLOPs per token (forward + backward, no activation recompute counted)::

    flops_per_token = 6·N + 12·L·h·s

* ``N`` = the parameters that take part in matrix multiplies: every decoder layer's attention
  projections (``h·(nq + 2·nkv)·d`` for QKV and ``nq·d·h`` for the output) and SwiGLU MLP
  (``3·h·ffn``), plus the output layer (``V·h``, ``V`` the padded vocabulary its matmul computes).
  The input embedding (a lookup) and the RMSNorm weights (elementwise) are excluded.
* ``6·N``: 2 FLOPs per multiply-add in the forward pass, twice that in the backward (input and weight
  gradients).
* ``12·L·h·s``: attention scores ``QKᵀ`` and the weighted sum ``AV`` cost ``2·2·s·h`` FLOPs per token
  and layer forward (``nq·d = h`` whatever the number of KV heads), times 3 for forward + backward.
  The full ``s×s`` square is counted, as Megatron-LM and PaLM's MFU do, not the causal half.

Recomputed forwards are deliberately not counted: MFU measures useful model FLOPs, so recompute shows
up as a lower MFU, not as more work.
"""
from __future__ import annotations

from megapmc.model.config import LlamaConfig

# Dense (no sparsity) per-device peaks in TFLOP/s, from the vendors' datasheets.
PEAK_TFLOPS_BF16: dict[str, float] = {
    "a100": 312.0,  # A100 SXM and PCIe, 40 and 80 GB
    "h100-sxm": 989.0,
    "h100-pcie": 756.0,
    "h200": 989.0,
}
PEAK_TFLOPS_FP32: dict[str, float] = {  # plain FP32 (PyTorch leaves TF32 matmuls off by default)
    "a100": 19.5,
    "h100-sxm": 67.0,
    "h100-pcie": 51.0,
    "h200": 67.0,
}


def matmul_parameters(config: LlamaConfig, padded_vocab_size: int | None = None) -> int:
    """``N`` of the formula: decoder-layer projection weights plus the output layer."""
    h, d = config.hidden_size, config.head_dim
    attn = h * (config.num_attention_heads + 2 * config.num_key_value_heads) * d + config.num_attention_heads * d * h
    mlp = 3 * h * config.ffn_hidden_size
    vocab = padded_vocab_size or config.padded_vocab_size()
    return config.num_layers * (attn + mlp) + vocab * h


def flops_per_token(config: LlamaConfig, seq_length: int, padded_vocab_size: int | None = None) -> float:
    """Training FLOPs per token: ``6·N + 12·L·h·s`` (see the module docstring)."""
    if seq_length <= 0:
        raise ValueError(f"--seq-length must be positive, got {seq_length}")
    n = matmul_parameters(config, padded_vocab_size)
    return 6.0 * n + 12.0 * config.num_layers * config.hidden_size * seq_length


def peak_tflops(device: str, bf16: bool = True) -> float:
    """The named device's dense peak (``a100``, ``h100-sxm``, ``h100-pcie``, ``h200``)."""
    table = PEAK_TFLOPS_BF16 if bf16 else PEAK_TFLOPS_FP32
    if device not in table:
        raise ValueError(f"unknown device {device!r} for MFU; choose one of {', '.join(table)} "
                         f"or pass the peak in TFLOP/s (--device-peak-tflops)")
    return table[device]


def peak_tflops_for_device(device_name: str, bf16: bool = True) -> float | None:
    """Peak for a CUDA device name such as ``NVIDIA A100-SXM4-80GB`` or ``NVIDIA H100 80GB HBM3``;
    ``None`` when the device is not one of the named ones (MFU is then not reported)."""
    name = device_name.upper()
    if "H200" in name:
        key = "h200"
    elif "H100" in name:
        key = "h100-pcie" if "PCIE" in name else "h100-sxm"
    elif "A100" in name:
        key = "a100"
    else:
        return None
    return peak_tflops(key, bf16)


def achieved_tflops(tokens_per_second: float, config: LlamaConfig, seq_length: int, num_devices: int = 1,
                    padded_vocab_size: int | None = None) -> float:
    """Model TFLOP/s per device for a measured training throughput (all devices' tokens per second)."""
    return tokens_per_second * flops_per_token(config, seq_length, padded_vocab_size) / num_devices / 1e12


def mfu(tokens_per_second: float, config: LlamaConfig, seq_length: int, peak_tflops_per_device: float,
        num_devices: int = 1, padded_vocab_size: int | None = None) -> float:
    """Model FLOPs utilisation: achieved model TFLOP/s per device over the device's peak."""
    if peak_tflops_per_device <= 0:
        raise ValueError(f"peak TFLOP/s must be positive, got {peak_tflops_per_device}")
    achieved = achieved_tflops(tokens_per_second, config, seq_length, num_devices, padded_vocab_size)
    return achieved / peak_tflops_per_device
