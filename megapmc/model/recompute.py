"""Activation recomputation (checkpointing), Megatron-LM's options.

* ``full``: whole decoder layers are recomputed in backward; ``uniform`` checkpoints consecutive chunks of
  ``recompute_num_layers`` layers (one saved input per chunk), ``block`` checkpoints only the first
  ``recompute_num_layers`` layers, one by one (trading memory for less recompute).
* ``selective``: only the attention core (the ``[b, n, s, s]``-sized part that is cheap to recompute
  and expensive to store) is recomputed.

The model has no dropout, so the recompute draws no random numbers (non-reentrant
``torch.utils.checkpoint`` would restore the default CPU/CUDA RNG state anyway).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch.utils.checkpoint

GRANULARITIES = (None, "full", "selective")
METHODS = ("uniform", "block")


@dataclass
class RecomputeConfig:
    granularity: str | None = None
    method: str = "uniform"
    num_layers: int = 1

    def __post_init__(self):
        if self.granularity not in GRANULARITIES:
            raise ValueError(f"--recompute-granularity {self.granularity!r}: choose full or selective")
        if self.method not in METHODS:
            raise ValueError(f"--recompute-method {self.method!r}: choose one of {METHODS}")
        if self.num_layers < 1:
            raise ValueError(f"--recompute-num-layers must be >= 1, got {self.num_layers}")

    @property
    def selective(self) -> bool:
        return self.granularity == "selective"


def layer_chunks(num_layers: int, config: RecomputeConfig) -> list[tuple[int, int, bool]]:
    """``(start, end, checkpointed)`` ranges covering ``range(num_layers)`` in order."""
    if config.granularity != "full":
        return [(i, i + 1, False) for i in range(num_layers)]
    n = config.num_layers
    if config.method == "uniform":
        return [(i, min(i + n, num_layers), True) for i in range(0, num_layers, n)]
    return [(i, i + 1, i < n) for i in range(num_layers)]


def checkpoint(fn, *args):
    """``fn(*args)`` whose activations are recomputed in backward instead of stored."""
    return torch.utils.checkpoint.checkpoint(fn, *args, use_reentrant=False)
