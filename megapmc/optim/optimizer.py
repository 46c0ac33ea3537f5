"""AdamW on fp32 master weights, with global-norm clipping across TP and DP and NaN/Inf skipping.

``MixedPrecisionOptimizer`` keeps a master copy of every parameter on every DP rank (the classic
Megatron optimizer); ``DistributedOptimizer`` (ZeRO-1, in ``distributed_optimizer.py``) keeps only
this rank's shard. Both read gradients from the ``DataParallel`` gradient buffer (``param.main_grad``),
never from ``param.grad``.

Master weights: bf16 parameters get an fp32 copy that AdamW updates and that is cast back into the
parameter after each step. fp32 parameters are their own master (AdamW updates them in place), so
fp32 training costs no extra copy.

Weight decay applies to matrices only: 1-D parameters (RMSNorm weights; biases, if a model had any)
are not decayed.

Gradient norm: the global L2 norm over the whole model. Each rank sums the squares of the gradient
elements it owns, counting a parameter replicated across the TP group (the norm weights; see
``tensor_parallel_params``) on TP rank 0 only, then the sum is all-reduced over TP and PP (and over DP when
the gradients are sharded).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from megapmc.optim.config import OptimizerConfig
from megapmc.parallel.state import ParallelState


@dataclass(frozen=True)
class StepResult:
    """What one ``step`` did: the global gradient norm before clipping, and whether the update was
    skipped because that norm was NaN or Inf (the parameters and Adam states are then untouched)."""

    grad_norm: float
    skipped: bool


@dataclass
class ParamShard:
    """The elements ``[start, end)`` of one flattened parameter that this rank optimises."""

    name: str
    param: nn.Parameter
    start: int
    end: int
    master: torch.Tensor  # fp32, [end - start]; a view of the parameter itself when it is fp32

    @property
    def model_view(self) -> torch.Tensor:
        return self.param.detach().view(-1)[self.start:self.end]

    @property
    def grad_view(self) -> torch.Tensor:
        return self.param.main_grad.view(-1)[self.start:self.end]

    @property
    def aliases_param(self) -> bool:
        return self.param.dtype == torch.float32


def tensor_parallel_params(module: nn.Module) -> set[int]:
    """Ids of the parameters split across TP ranks: those owned directly by a module whose class sets
    ``tensor_model_parallel = True`` (megapmc.parallel's layers). A class flag, not a parameter
    attribute, because building on the meta device and materialising replaces the Parameter objects."""
    return {
        id(p) for m in module.modules() if getattr(m, "tensor_model_parallel", False)
        for p in m.parameters(recurse=False)
    }


class MixedPrecisionOptimizer:
    """AdamW over fp32 master weights of all parameters, fed by a ``DataParallel`` gradient buffer.

    ``param_groups`` is the underlying ``torch.optim.AdamW``'s, so an LR scheduler can set ``lr``
    per group; ``step(lr)`` sets it on every group first when given.
    """

    def __init__(self, ddp, config: OptimizerConfig, parallel: ParallelState):
        self.ddp, self.config, self.parallel = ddp, config, parallel
        names = {id(p): n for n, p in ddp.module.named_parameters()}
        self.shards: list[ParamShard] = []
        for param, start, end in self._owned_ranges():
            view = param.detach().view(-1)[start:end]
            master = view if param.dtype == torch.float32 else view.to(torch.float32, copy=True)
            self.shards.append(ParamShard(names[id(param)], param, start, end, master))
        decay = [s.master for s in self.shards if s.param.ndim > 1]
        no_decay = [s.master for s in self.shards if s.param.ndim <= 1]
        groups = [g for g in ({"params": decay, "weight_decay": config.weight_decay},
                              {"params": no_decay, "weight_decay": 0.0}) if g["params"]]
        device = next(iter(ddp.module.parameters())).device
        fused = config.fused if config.fused is not None else device.type == "cuda"
        split = tensor_parallel_params(ddp.module)
        # Replicated across TP (identical gradients on every TP rank): counted in the norm on TP rank 0 only.
        self._tp_duplicates = {
            id(s.param) for s in self.shards
            if parallel.tp_size > 1 and parallel.tp_rank != 0 and id(s.param) not in split
        }
        # A DP rank can own no elements at all (tiny models, many ranks): keep a valid, empty optimizer.
        self.optimizer = torch.optim.AdamW(
            groups or [{"params": [torch.zeros(0, device=device)]}], lr=config.lr,
            betas=(config.adam_beta1, config.adam_beta2), eps=config.adam_eps,
            weight_decay=config.weight_decay, fused=fused or None, foreach=None if fused else True,
        )
        self._device = device

    # --- what subclasses change -------------------------------------------------------------------
    def _owned_ranges(self):
        """``(param, start, end)`` of the flattened elements this rank updates: all of them."""
        for buffer in self.ddp.grad_buffers:
            for p in buffer.params:
                yield p, 0, p.numel()

    def _norm_groups(self) -> list:
        """Process groups over which the per-rank sums of squared gradients are added."""
        groups = [self.parallel.tp_group] if self.parallel.tp_size > 1 else []
        if self.parallel.pp_size > 1:  # pipeline stages hold disjoint parameters: their sums add
            groups.append(self.parallel.pp_group)
        return groups

    def _sync_params(self) -> None:
        """Make the updated parameters visible on every DP rank (nothing to do: all ranks updated all)."""

    # --- the public interface ---------------------------------------------------------------------
    @property
    def param_groups(self) -> list[dict]:
        return self.optimizer.param_groups

    def zero_grad(self) -> None:
        self.ddp.zero_grad_buffer()
        for s in self.shards:
            s.master.grad = None

    @torch.no_grad()
    def step(self, lr: float | None = None) -> StepResult:
        """Finish the DP gradient sync, clip by the global norm and update; skip on NaN/Inf."""
        self.ddp.finish_param_sync()  # a previous step's overlapped all-gather must land before we write
        self.ddp.finish_grad_sync()
        for s in self.shards:
            grad = s.grad_view
            s.master.grad = grad if grad.dtype == torch.float32 else grad.float()
        grad_norm = self._global_grad_norm()
        if not math.isfinite(grad_norm):
            return StepResult(grad_norm=grad_norm, skipped=True)
        if self.config.clip_grad > 0:
            coeff = self.config.clip_grad / (grad_norm + 1e-6)
            if coeff < 1.0 and self.shards:
                torch._foreach_mul_([s.master.grad for s in self.shards], coeff)
        if lr is not None:
            for group in self.optimizer.param_groups:
                group["lr"] = lr
        self.optimizer.step()
        copies = [s for s in self.shards if not s.aliases_param]
        if copies:  # fp32 -> bf16, one multi-tensor kernel
            torch._foreach_copy_([s.model_view for s in copies], [s.master for s in copies])
        self._sync_params()
        return StepResult(grad_norm=grad_norm, skipped=False)

    def _global_grad_norm(self) -> float:
        grads = [s.master.grad for s in self.shards if id(s.param) not in self._tp_duplicates]
        sum_sq = torch.zeros((), dtype=torch.float32, device=self._device)
        if grads:
            sum_sq = torch.stack(torch._foreach_norm(grads)).square().sum()
        for group in self._norm_groups():
            dist.all_reduce(sum_sq, group=group)
        return sum_sq.sqrt().item()

    @torch.no_grad()
    def reload_model_params(self) -> None:
        """Refresh the fp32 masters from the model (call after loading model weights into it)."""
        self.ddp.finish_param_sync()
        for s in self.shards:
            if not s.aliases_param:
                s.master.copy_(s.model_view)

    # --- checkpointing ----------------------------------------------------------------------------
    def shard_layout(self) -> dict[str, tuple[int, int, int]]:
        """``{parameter name: (start, end, numel)}``: the flattened elements this rank updates, as the
        ``.range`` entries of ``sharded_state_dict`` record them."""
        return {s.name: (s.start, s.end, s.param.numel()) for s in self.shards}

    def sharded_state_dict(self) -> dict[str, torch.Tensor]:
        """This rank's optimizer shard as plain tensors (live, not copies: save before the next step).

        Keys per parameter name: ``.range`` (int64 ``[start, end, numel]``, to catch a layout change
        on load), ``.master`` (bf16 parameters only), and once a step has run ``.exp_avg``,
        ``.exp_avg_sq``, ``.step``.
        """
        sd: dict[str, torch.Tensor] = {}
        for s in self.shards:
            sd[f"{s.name}.range"] = torch.tensor([s.start, s.end, s.param.numel()], dtype=torch.int64)
            if not s.aliases_param:
                sd[f"{s.name}.master"] = s.master
            state = self.optimizer.state.get(s.master)
            if state:
                sd[f"{s.name}.exp_avg"] = state["exp_avg"]
                sd[f"{s.name}.exp_avg_sq"] = state["exp_avg_sq"]
                sd[f"{s.name}.step"] = state["step"].detach().reshape(1).to("cpu", torch.float32)
        return sd

    @torch.no_grad()
    def load_sharded_state_dict(self, sd: dict[str, torch.Tensor]) -> None:
        """Load what ``sharded_state_dict`` returned on the same (TP, DP) rank and layout, or full
        per-parameter state from ``merge_sharded_state_dicts`` (any DP size, either optimizer): each
        rank then takes the elements it owns."""
        self.ddp.finish_param_sync()
        model_names = {n for n, _ in self.ddp.module.named_parameters()}
        owned = {s.name for s in self.shards}
        has_state = any(k.endswith(".exp_avg") for k in sd)
        kinds = ("range",) + (("exp_avg", "exp_avg_sq", "step") if has_state else ())
        expected = {f"{s.name}.{k}" for s in self.shards for k in kinds}
        expected |= {f"{s.name}.master" for s in self.shards if not s.aliases_param}
        missing = sorted(expected - set(sd))
        foreign = sorted(k for k in sd if k.rpartition(".")[0] not in model_names)
        unexpected = sorted(k for k in set(sd) - expected if k.rpartition(".")[0] in owned or
                            not _is_full(sd, k.rpartition(".")[0]))
        if missing or foreign or unexpected:
            raise ValueError(
                f"optimizer shard does not match this model/optimizer: missing {missing[:5]}, unexpected "
                f"{(foreign + unexpected)[:5]}; resume with the same model, --use-distributed-optimizer setting "
                f"and parallel layout (or merge every DP rank's shard with merge_sharded_state_dicts), or load "
                f"the model weights only (--finetune / --no-load-optim)"
            )
        state = {}
        index = {id(p): i for i, p in enumerate(p for g in self.optimizer.param_groups for p in g["params"])}
        for s in self.shards:
            saved = sd[f"{s.name}.range"].tolist()
            numel = s.param.numel()
            if saved == [s.start, s.end, numel]:
                cut = slice(None)
            elif saved == [0, numel, numel]:
                cut = slice(s.start, s.end)
            else:
                raise ValueError(
                    f"optimizer shard of {s.name} covers elements {saved[:2]} of {saved[2]}, this rank owns "
                    f"{[s.start, s.end]} of {numel}: it was saved with another data-parallel size or "
                    f"--ddp-bucket-size; merge every DP rank's shard first (merge_sharded_state_dicts), "
                    f"or load the model weights only"
                )
            if not s.aliases_param:
                s.master.copy_(sd[f"{s.name}.master"][cut])
                s.model_view.copy_(s.master)
            if has_state:
                state[index[id(s.master)]] = {
                    "step": sd[f"{s.name}.step"].reshape(()).clone(),
                    "exp_avg": sd[f"{s.name}.exp_avg"][cut],
                    "exp_avg_sq": sd[f"{s.name}.exp_avg_sq"][cut],
                }
        if has_state:
            current = self.optimizer.state_dict()
            self.optimizer.load_state_dict({"state": state, "param_groups": current["param_groups"]})
        self._sync_params()


def _is_full(sd: dict[str, torch.Tensor], name: str) -> bool:
    r = sd.get(f"{name}.range")
    return r is not None and r[0].item() == 0 and r[1].item() == r[2].item()


def merge_sharded_state_dicts(shards: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Reassemble the optimizer shards of every DP rank of one TP rank into full per-parameter state
    (each ``.range`` becomes ``[0, numel, numel]``), which ``load_sharded_state_dict`` accepts at any
    DP size and with either optimizer: resuming a 32-GPU run on 16, or switching ZeRO-1 on or off."""
    parts: dict[str, list[tuple[int, int, int, dict]]] = {}
    for shard in shards:
        for key, value in shard.items():
            name, _, kind = key.rpartition(".")
            if kind == "range":
                start, end, numel = value.tolist()
                parts.setdefault(name, []).append((start, end, numel, shard))
    out: dict[str, torch.Tensor] = {}
    for name, pieces in parts.items():
        pieces.sort(key=lambda p: p[0])
        numel = pieces[0][2]
        covered = [(start, end) for start, end, _, _ in pieces]
        if covered[0][0] != 0 or covered[-1][1] != numel or any(a[1] != b[0] for a, b in zip(covered, covered[1:])):
            raise ValueError(f"the shards of {name} cover {covered} of {numel} elements: give the optimizer "
                             f"shard of every data-parallel rank of this tensor-parallel rank, once each")
        out[f"{name}.range"] = torch.tensor([0, numel, numel], dtype=torch.int64)
        for kind in ("master", "exp_avg", "exp_avg_sq"):
            present = [f"{name}.{kind}" in shard for _, _, _, shard in pieces]
            if not any(present):
                continue
            if not all(present):
                raise ValueError(f"{name}.{kind} is in some data-parallel shards but not all: the shards come "
                                 f"from different checkpoints")
            out[f"{name}.{kind}"] = torch.cat([shard[f"{name}.{kind}"].reshape(-1) for _, _, _, shard in pieces])
        steps = {shard[f"{name}.step"].item() for _, _, _, shard in pieces if f"{name}.step" in shard}
        if len(steps) > 1:
            raise ValueError(f"the shards of {name} are at different steps {sorted(steps)}: they come from "
                             f"different checkpoints")
        if steps:
            out[f"{name}.step"] = torch.tensor([steps.pop()], dtype=torch.float32)
    return out
