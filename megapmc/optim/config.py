"""Optimizer and data-parallel gradient-reduction settings, validated once."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from megapmc.utils.config import from_dict_strict


@dataclass
class OptimizerConfig:
    """AdamW with fp32 master weights, Megatron-style gradient buffers and (optionally) ZeRO-1 sharding.

    Field names follow Megatron-LM's flags (``--lr``, ``--adam-beta2``, ``--clip-grad``,
    ``--use-distributed-optimizer``, ``--overlap-grad-reduce``, ``--ddp-bucket-size`` ...).
    """

    lr: float = 2e-5
    min_lr: float = 0.0  # read by the LR schedule, not by the optimizer
    weight_decay: float = 0.0
    adam_beta1: float = 0.9
    adam_beta2: float = 0.95  # LLaMA's pretraining value
    adam_eps: float = 1e-8
    clip_grad: float = 1.0  # global L2 norm across TP and DP; 0 disables clipping
    bf16: bool = False  # parameters and compute in bf16, fp32 master weights and gradients
    use_distributed_optimizer: bool = False  # ZeRO-1: master weights and Adam states sharded across DP
    overlap_grad_reduce: bool = True  # launch each bucket's collective from backward hooks
    # Distributed optimizer: leave the parameter all-gather running after the step; each module's
    # forward (or a state_dict) waits for its own bucket, so the gather hides behind the next forward.
    overlap_param_gather: bool = False
    bucket_size: int | None = 40_000_000  # elements per communication bucket; None: one bucket
    grad_reduce_in_fp32: bool = True  # gradient buffer (accumulation and reduction) in fp32
    fused: bool | None = None  # fused AdamW kernel; None: on when the parameters live on CUDA

    def __post_init__(self):
        if self.lr < 0:
            raise ValueError(f"--lr must be >= 0, got {self.lr}")
        if not 0 <= self.min_lr <= self.lr:
            raise ValueError(f"--min-lr must be in [0, --lr={self.lr}], got {self.min_lr}")
        if self.weight_decay < 0:
            raise ValueError(f"--weight-decay must be >= 0, got {self.weight_decay}")
        for name in ("adam_beta1", "adam_beta2"):
            value = getattr(self, name)
            if not 0.0 <= value < 1.0:
                raise ValueError(f"--{name.replace('_', '-')} must be in [0, 1), got {value}")
        if self.adam_eps <= 0:
            raise ValueError(f"--adam-eps must be > 0, got {self.adam_eps}")
        if self.clip_grad < 0:
            raise ValueError(f"--clip-grad must be >= 0 (0 disables clipping), got {self.clip_grad}")
        if self.overlap_param_gather and not self.use_distributed_optimizer:
            raise ValueError("--overlap-param-gather needs --use-distributed-optimizer (without it there is no "
                             "parameter all-gather to overlap)")
        if self.bucket_size is not None and self.bucket_size <= 0:
            raise ValueError(f"--ddp-bucket-size must be positive (or unset for one bucket), got {self.bucket_size}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "OptimizerConfig":
        return from_dict_strict(cls, d)
