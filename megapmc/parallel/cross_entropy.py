"""Cross-entropy over vocabulary-parallel logits, without gathering the full vocabulary on one rank.

Each TP rank holds logits for its vocabulary slice ``[vocab_start, vocab_start + V/tp)``. The loss needs
three numbers per token that span all slices: the max logit (for stability), the target's logit (owned by
one rank) and the sum of exponentials. They are combined with two all-reduces of ``[b·s]`` floats, never
of ``[b·s, V]``. Computed in fp32 whatever the logits' dtype. Padded vocabulary columns must already be
``-inf`` (the model masks them), so they never win the softmax.
"""
from __future__ import annotations

import torch
import torch.distributed as dist

from megapmc.parallel.mappings import Group, group_size


class _VocabParallelCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, logits: torch.Tensor, target: torch.Tensor, vocab_start: int, group: Group):
        distributed = group_size(group) > 1
        num_local = logits.shape[-1]
        x = logits.float()  # [..., V/tp]
        max_logit = x.amax(dim=-1)  # [...]
        if distributed:
            dist.all_reduce(max_logit, op=dist.ReduceOp.MAX, group=group)
        shifted = x - max_logit.unsqueeze(-1)  # [..., V/tp], a new tensor: the caller's logits stay intact

        local_target = target - vocab_start
        not_here = (local_target < 0) | (local_target >= num_local)
        local_target = local_target.masked_fill(not_here, 0)
        target_logit = shifted.gather(-1, local_target.unsqueeze(-1)).squeeze(-1).masked_fill(not_here, 0.0)

        exp = shifted.exp_()  # [..., V/tp], in place: the shifted logits are not needed again
        sum_exp = exp.sum(dim=-1)
        if distributed:
            both = torch.stack([target_logit, sum_exp])  # [2, ...]: one all-reduce for both sums
            dist.all_reduce(both, group=group)
            target_logit, sum_exp = both.unbind(0)
        loss = torch.log(sum_exp) - target_logit

        softmax = exp.div_(sum_exp.unsqueeze(-1))
        ctx.save_for_backward(softmax, local_target, not_here)
        ctx.logits_dtype = logits.dtype
        return loss

    @staticmethod
    def backward(ctx, grad_loss: torch.Tensor):
        softmax, local_target, not_here = ctx.saved_tensors
        # d loss / d logit_j = softmax_j - [j == target]; the saved softmax becomes the gradient in place.
        grad = softmax
        grad.scatter_add_(-1, local_target.unsqueeze(-1), (not_here.to(grad.dtype) - 1.0).unsqueeze(-1))
        grad.mul_(grad_loss.unsqueeze(-1))
        return grad.to(ctx.logits_dtype), None, None, None


def vocab_parallel_cross_entropy(logits: torch.Tensor, target: torch.Tensor, vocab_start: int = 0,
                                 group: Group = None) -> torch.Tensor:
    """Per-token loss (fp32, shape of ``target``) of logits ``[..., V/tp]`` whose columns are vocabulary
    ids ``vocab_start + j``. ``target`` holds ids in ``[0, vocab_size)``. Its backward can run once."""
    return _VocabParallelCrossEntropy.apply(logits, target, vocab_start, group)
