"""Per-TP-rank random-number streams, so randomness inside the tensor-parallel region (dropout on a
rank's slice of heads) differs across TP ranks while randomness outside it stays identical on every rank.

Megatron's convention: the default generator is seeded with ``seed`` on every rank of a TP group, and a
tracked "model-parallel" stream with ``seed + 2718 + tp_rank``. ``tracker.fork()`` runs a block on the
tracked stream and advances it. Weight initialisation does not use these streams: each layer draws its
full weight from its own seeded generator (``megapmc.parallel.layers.seeded_normal``), which is what
makes the weights independent of the TP size.
"""
from __future__ import annotations

import contextlib

import torch

from megapmc.parallel.state import ParallelState

MODEL_PARALLEL_RNG = "model-parallel-rng"
_TP_SEED_OFFSET = 2718


def _get_state(device: torch.device) -> torch.Tensor:
    return torch.cuda.get_rng_state(device) if device.type == "cuda" else torch.get_rng_state()


def _set_state(state: torch.Tensor, device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.set_rng_state(state, device)
    else:
        torch.set_rng_state(state)


class RNGStatesTracker:
    """Named RNG states for one device; ``fork(name)`` swaps the device's default generator to it."""

    def __init__(self, device="cpu"):
        self.device = torch.device(device)
        self._states: dict[str, torch.Tensor] = {}

    def add(self, name: str, seed: int) -> None:
        if name in self._states:
            raise ValueError(f"RNG state {name!r} already exists")
        saved = _get_state(self.device)
        torch.manual_seed(seed) if self.device.type != "cuda" else torch.cuda.manual_seed(seed)
        self._states[name] = _get_state(self.device)
        _set_state(saved, self.device)

    def get_states(self) -> dict[str, torch.Tensor]:
        return {k: v.clone() for k, v in self._states.items()}

    def set_states(self, states: dict[str, torch.Tensor]) -> None:
        self._states = {k: v.clone() for k, v in states.items()}

    @contextlib.contextmanager
    def fork(self, name: str = MODEL_PARALLEL_RNG):
        if name not in self._states:
            raise KeyError(f"RNG state {name!r} was never added (call model_parallel_seed first)")
        saved = _get_state(self.device)
        _set_state(self._states[name], self.device)
        try:
            yield
        finally:
            self._states[name] = _get_state(self.device)
            _set_state(saved, self.device)

    def recompute_contexts(self):
        """For ``torch.utils.checkpoint``'s ``context_fn``: the recompute replays the tracked streams as
        they were when the forward ran (the default generator is restored by checkpoint itself)."""
        at_forward = self.get_states()

        @contextlib.contextmanager
        def replay():
            current = self.get_states()
            self.set_states(at_forward)
            try:
                yield
            finally:
                self.set_states(current)

        return contextlib.nullcontext(), replay()


def model_parallel_seed(seed: int, parallel: ParallelState, device="cpu") -> RNGStatesTracker:
    """Seed the default generator with ``seed`` (identical across the TP group) and return a tracker whose
    model-parallel stream is seeded with ``seed + 2718 + tp_rank`` (distinct per TP rank)."""
    device = torch.device(device)
    torch.manual_seed(seed)
    tracker = RNGStatesTracker(device)
    tracker.add(MODEL_PARALLEL_RNG, seed + _TP_SEED_OFFSET + parallel.tp_rank)
    return tracker
