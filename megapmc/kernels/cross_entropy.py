"""Per-token cross-entropy of full-vocabulary logits, used when the logits are not split (TP = 1).
With TP > 1 the model always uses ``megapmc.parallel.cross_entropy.vocab_parallel_cross_entropy``.

Every backend takes ``logits [..., V]`` (padded columns already ``-inf``) and ``target [...]`` and returns
the fp32 loss of shape ``target.shape``. Backends: ``torch`` (reference: ``F.cross_entropy`` in fp32),
``single_pass`` (megapmc's vocab-parallel cross-entropy on one rank: it keeps the softmax from the forward
as the gradient buffer, so backward is one in-place update; about 2× faster than the reference on the
CPU), ``compile``, ``liger`` (liger-kernel's Triton kernel, which computes the gradient during the
forward and never materialises an fp32 copy of the logits).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from megapmc.parallel.cross_entropy import vocab_parallel_cross_entropy


def cross_entropy_reference(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    loss = F.cross_entropy(logits.float().flatten(0, -2), target.flatten(), reduction="none")  # [n]
    return loss.view(target.shape)


def _load_liger():
    from liger_kernel.ops.cross_entropy import LigerCrossEntropyFunction

    def cross_entropy(logits, target):
        # positional: weight=None, ignore_index=-100, lse_square_scale=0, label_smoothing=0, reduction
        loss = LigerCrossEntropyFunction.apply(
            logits.flatten(0, -2), target.flatten(), None, -100, 0.0, 0.0, "none"
        )
        if isinstance(loss, tuple):  # newer liger returns (loss, z_loss, ...)
            loss = loss[0]
        return loss.float().view(target.shape)

    return cross_entropy


def cross_entropy_single_pass(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return vocab_parallel_cross_entropy(logits, target)


BACKENDS = {
    "torch": lambda: cross_entropy_reference,
    "single_pass": lambda: cross_entropy_single_pass,
    "compile": lambda: torch.compile(cross_entropy_reference),
    "liger": _load_liger,
}
