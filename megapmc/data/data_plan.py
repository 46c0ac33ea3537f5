"""The data plan: what a blended run consumes from each source, computed from token counts alone.

An epoch is one pass over the epoch source's tokens (PMC-LLaMA: the books), so the number of iterations
for N epochs follows from that source's size and its exact per-batch count. The per-batch counts come
from the same C++ apportionment that builds the blending index, so the plan and the run agree sample
for sample.
"""
from __future__ import annotations

import math
import numbers
from dataclasses import asdict, dataclass
from fractions import Fraction
from typing import Optional, Sequence

import numpy as np

from megapmc import _C

# Above this, integer weights are rounded to a 2**40 scale instead of kept exact.
_MAX_EXACT_WEIGHT = 1 << 50


def integer_weights(weights: Sequence[float]) -> list[int]:
    """Exact integer ratios for ``weights``: ``[15, 4, 1]`` stays, ``[0.75, 0.2, 0.05]`` -> ``[15, 4, 1]``.

    Decimal weights are read exactly (``Fraction(str(w))``), so the blend of ``0.3, 0.7`` is exactly 3:7.
    """
    if not weights:
        raise ValueError("the blend needs at least one weight")
    fracs = []
    for w in weights:
        if not (isinstance(w, numbers.Real) and math.isfinite(float(w)) and w > 0):
            raise ValueError(f"blend weight {w!r} must be a positive finite number")
        fracs.append(Fraction(int(w)) if isinstance(w, numbers.Integral) else Fraction(str(float(w))))
    denom = math.lcm(*(f.denominator for f in fracs))
    ints = [int(f * denom) for f in fracs]
    g = math.gcd(*ints)
    ints = [i // g for i in ints]
    if max(ints) >= _MAX_EXACT_WEIGHT:
        total = sum(fracs)
        ints = [max(1, round(float(f / total) * (1 << 40))) for f in fracs]
    return ints


def samples_in(tokens: int, seq_length: int) -> int:
    """Samples of ``seq_length + 1`` tokens (consecutive samples share one token) in ``tokens`` tokens."""
    return max(0, (int(tokens) - 1) // seq_length)


def blend_totals(weights: Sequence[int], global_batch_size: int, num_samples: int, micro_batch_size: int = 1) -> np.ndarray:
    """Samples each source contributes to the first ``num_samples`` samples of the blend."""
    w = np.asarray(weights, dtype=np.int64)
    full, rest = divmod(int(num_samples), global_batch_size)
    if rest == 0:
        return _C.blend_batch_counts(w, global_batch_size, full).sum(axis=0)
    # A partial last batch depends on the in-batch layout; ask the index builder itself.
    return _C.build_blending_indices(w, global_batch_size, micro_batch_size, num_samples)[2]


@dataclass
class SourcePlan:
    name: str
    weight: float
    tokens: int             # tokens in the source (its training split)
    samples_per_epoch: int  # samples of seq_length + 1 in one pass
    samples_per_batch: float
    min_per_batch: int
    max_per_batch: int
    samples: int            # samples drawn over the run
    tokens_consumed: int    # samples * seq_length (the tokens trained on)
    epochs: float           # passes over the source
    repeats: int            # how many times its tokens come back after the first pass


@dataclass
class DataPlan:
    seq_length: int
    global_batch_size: int
    train_iters: int
    train_samples: int
    epoch_source: str
    train_epochs: Optional[float]
    sources: list[SourcePlan]

    @property
    def source_samples(self) -> list[int]:
        return [s.samples for s in self.sources]

    def to_dict(self) -> dict:
        return asdict(self)

    def table(self) -> str:
        head = (f"data plan: seq_length {self.seq_length}, global batch {self.global_batch_size}, "
                f"{self.train_iters:,} iterations, {self.train_samples:,} samples, "
                f"{_human(self.train_samples * self.seq_length)} tokens; epoch = one pass over {self.epoch_source}")
        if self.train_epochs is not None:
            head += f" ({self.train_epochs:g} epoch{'' if self.train_epochs == 1 else 's'})"
        rows = [("source", "weight", "tokens", "samples/batch", "samples", "tokens used", "epochs", "repeats")]
        for s in self.sources:
            per_batch = (f"{s.min_per_batch}" if s.min_per_batch == s.max_per_batch
                         else f"{s.samples_per_batch:.2f} ({s.min_per_batch}-{s.max_per_batch})")
            rows.append((s.name, f"{s.weight:g}", _human(s.tokens), per_batch, f"{s.samples:,}",
                         _human(s.tokens_consumed), f"{s.epochs:.4g}", str(s.repeats)))
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
                 for r in rows]
        return "\n".join([head, *lines])


def _human(n: float) -> str:
    for unit, scale in (("T", 1e12), ("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.2f}{unit}"
    return f"{int(n)}"


def make_plan(names: Sequence[str], weights: Sequence[float], tokens: Sequence[int], seq_length: int,
              global_batch_size: int, *, train_samples: Optional[int] = None, train_iters: Optional[int] = None,
              train_epochs: Optional[float] = None, epoch_source: int = 0, micro_batch_size: int = 1) -> DataPlan:
    """Plan a blended run from per-source token counts; give exactly one of samples, iterations or epochs."""
    if not (len(names) == len(weights) == len(tokens)) or not names:
        raise ValueError(f"names, weights and tokens must have one entry per source, got "
                         f"{len(names)}, {len(weights)}, {len(tokens)}")
    if seq_length < 1 or global_batch_size < 1:
        raise ValueError(f"seq_length ({seq_length}) and global_batch_size ({global_batch_size}) must be >= 1")
    if sum(x is not None for x in (train_samples, train_iters, train_epochs)) != 1:
        raise ValueError("give exactly one of --train-samples, --train-iters, --train-epochs")
    if not 0 <= epoch_source < len(names):
        raise ValueError(f"epoch source index {epoch_source} outside 0..{len(names) - 1}")
    per_epoch = [samples_in(t, seq_length) for t in tokens]
    for name, t, s in zip(names, tokens, per_epoch):
        if s < 1:
            raise ValueError(f"source {name!r} holds {int(t)} tokens, fewer than one sample of seq_length + 1 = "
                             f"{seq_length + 1} tokens; add data or lower --seq-length")
    w = integer_weights(list(weights))
    w_arr = np.asarray(w, dtype=np.int64)
    if train_epochs is not None:
        if not train_epochs > 0:
            raise ValueError(f"--train-epochs must be positive, got {train_epochs}")
        needed = math.floor(train_epochs * per_epoch[epoch_source])
        # Most iterations whose exact running count of the epoch source stays within N passes (at least one),
        # so N epochs never start an (N+1)-th pass; the shortfall is under one batch's share.
        guess = math.ceil(needed * sum(w) / (w[epoch_source] * global_batch_size))
        counts = _C.blend_batch_counts(w_arr, global_batch_size, guess + 2)
        cumulative = np.cumsum(counts[:, epoch_source])
        train_iters = max(1, int(np.searchsorted(cumulative, needed, side="right")))
        train_samples = train_iters * global_batch_size
    elif train_iters is not None:
        if train_iters < 0:
            raise ValueError(f"--train-iters must be >= 0, got {train_iters}")
        train_samples = train_iters * global_batch_size
    else:
        if train_samples < 0:
            raise ValueError(f"--train-samples must be >= 0, got {train_samples}")
        train_iters = math.ceil(train_samples / global_batch_size)
    full = train_samples // global_batch_size
    batch_counts = _C.blend_batch_counts(w_arr, global_batch_size, max(full, 1))
    totals = blend_totals(w, global_batch_size, train_samples, micro_batch_size)
    total_w = sum(w)
    sources = []
    for k, name in enumerate(names):
        samples = int(totals[k])
        epochs = samples / per_epoch[k]
        sources.append(SourcePlan(
            name=name, weight=float(weights[k]), tokens=int(tokens[k]), samples_per_epoch=per_epoch[k],
            samples_per_batch=global_batch_size * w[k] / total_w,
            min_per_batch=int(batch_counts[:, k].min()), max_per_batch=int(batch_counts[:, k].max()),
            samples=samples, tokens_consumed=samples * seq_length, epochs=epochs,
            repeats=max(0, math.ceil(epochs) - 1),
        ))
    return DataPlan(seq_length=seq_length, global_batch_size=global_batch_size, train_iters=int(train_iters),
                    train_samples=int(train_samples), epoch_source=names[epoch_source],
                    train_epochs=train_epochs, sources=sources)
