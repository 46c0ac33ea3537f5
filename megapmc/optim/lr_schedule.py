"""Learning-rate schedule: linear warmup, then constant, linear or cosine decay to ``min_lr``.

Semantics follow Megatron-LM's ``OptimizerParamScheduler`` with one deliberate difference: the rate
for the step that follows ``n`` completed steps is ``lr * (n + 1) / warmup`` during warmup, so the
first step already learns (Megatron's first step runs at lr 0). Steps the optimizer skipped (NaN/Inf
gradients) do not advance the schedule.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import asdict, dataclass

DECAY_STYLES = ("constant", "linear", "cosine")


@dataclass
class LRScheduleConfig:
    lr: float
    min_lr: float = 0.0
    lr_decay_style: str = "cosine"
    lr_warmup_iters: int = 0
    lr_warmup_fraction: float | None = None  # warmup as a fraction of the decay iterations (Megatron)
    lr_decay_iters: int | None = None  # None: decay over the whole run (set from train_iters)

    def __post_init__(self):
        if self.lr_decay_style not in DECAY_STYLES:
            raise ValueError(f"--lr-decay-style {self.lr_decay_style!r}: choose one of {', '.join(DECAY_STYLES)}")
        if self.lr <= 0:
            raise ValueError(f"--lr must be positive, got {self.lr}")
        if not 0 <= self.min_lr <= self.lr:
            raise ValueError(f"--min-lr {self.min_lr} must lie in [0, --lr {self.lr}]")
        if self.lr_warmup_iters < 0:
            raise ValueError(f"--lr-warmup-iters must be >= 0, got {self.lr_warmup_iters}")
        if self.lr_warmup_fraction is not None:
            if self.lr_warmup_iters:
                raise ValueError("give only one of --lr-warmup-iters and --lr-warmup-fraction")
            if not 0 <= self.lr_warmup_fraction < 1:
                raise ValueError(f"--lr-warmup-fraction must lie in [0, 1), got {self.lr_warmup_fraction}")
        if self.lr_decay_iters is not None and self.lr_decay_iters < self.lr_warmup_iters:
            raise ValueError(
                f"--lr-decay-iters {self.lr_decay_iters} is shorter than the warmup "
                f"({self.lr_warmup_iters} iterations); lengthen the decay or shorten the warmup"
            )


    def resolve(self, train_iters: int) -> "LRScheduleConfig":
        """This schedule with the decay length (default: the whole run) and the warmup in iterations."""
        decay_iters = self.lr_decay_iters if self.lr_decay_iters is not None else train_iters
        warmup = self.lr_warmup_iters
        if self.lr_warmup_fraction is not None:
            warmup = int(self.lr_warmup_fraction * decay_iters)
        return dataclasses.replace(self, lr_warmup_iters=warmup, lr_warmup_fraction=None, lr_decay_iters=decay_iters)


def lr_at(config: LRScheduleConfig, step: int) -> float:
    """Learning rate for the optimizer step that follows ``step`` completed steps."""
    warmup = config.lr_warmup_iters
    if step < warmup:
        return config.lr * (step + 1) / warmup
    if config.lr_decay_style == "constant":
        return config.lr
    decay_iters = config.lr_decay_iters
    if decay_iters is None:
        raise ValueError("lr_decay_iters is unset: resolve it from train_iters before scheduling")
    if step >= decay_iters:
        return config.min_lr
    ratio = (step - warmup) / (decay_iters - warmup)  # in [0, 1)
    if config.lr_decay_style == "linear":
        coeff = 1.0 - ratio
    else:
        coeff = 0.5 * (1.0 + math.cos(math.pi * ratio))
    return config.min_lr + coeff * (config.lr - config.min_lr)


class LRScheduler:
    """Counts successful optimizer steps and hands out the learning rate for the next one."""

    def __init__(self, config: LRScheduleConfig):
        self.config = config
        self.num_steps = 0

    def get_lr(self) -> float:
        return lr_at(self.config, self.num_steps)

    def step(self) -> None:
        self.num_steps += 1

    def state_dict(self) -> dict:
        return {"num_steps": self.num_steps, "config": asdict(self.config)}

    def load_state_dict(self, state: dict) -> None:
        """Restore the step count; the schedule itself comes from this run's flags, so a resumed run
        may change, say, ``--min-lr`` (as Megatron's ``--override-opt_param-scheduler`` allows)."""
        self.num_steps = int(state["num_steps"])
