"""Overhead of megapmc's data-parallel gradient buffer and optimizer against plain PyTorch, one process.

Same model (megapmc's LlamaModel, fp32, CPU) and batches, in the same run, iterations alternated so
that load from other processes hits every variant alike; median times reported:

* ``torch``: ``param.grad`` accumulation, ``clip_grad_norm_``, ``torch.optim.AdamW(foreach=True)``;
* ``megapmc``: ``DataParallel`` (contiguous fp32 main-grad buffer, backward hooks) + ``MixedPrecisionOptimizer``;
* ``megapmc-zero1``: the same with the distributed optimizer (DP=1: the sharding machinery, no peers).

Each iteration runs ``--micro-batches`` forward/backward passes (gradient accumulation) then one step.

    python benchmarks/bench_optim.py [--hidden-size 512 --num-layers 4 --iters 10] [--json out.json]
"""
from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import time

import torch

from megapmc.model import LlamaConfig, TransformerOptions, build_model
from megapmc.optim import DataParallel, OptimizerConfig, build_optimizer
from megapmc.parallel.state import ParallelState


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--num-layers", type=int, default=4)
    p.add_argument("--hidden-size", type=int, default=512)
    p.add_argument("--vocab-size", type=int, default=8000)
    p.add_argument("--seq-length", type=int, default=256)
    p.add_argument("--micro-batch-size", type=int, default=2)
    p.add_argument("--micro-batches", type=int, default=2)
    p.add_argument("--iters", type=int, default=10)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: PyTorch's choice)")
    p.add_argument("--json", help="also write the results here")
    return p.parse_args(argv)


class TorchVariant:
    def __init__(self, model, config: OptimizerConfig):
        self.model, self.config = model, config
        decay = [p for p in model.parameters() if p.ndim > 1]
        no_decay = [p for p in model.parameters() if p.ndim <= 1]
        self.opt = torch.optim.AdamW(
            [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
            lr=config.lr, betas=(config.adam_beta1, config.adam_beta2), eps=config.adam_eps, foreach=True)

    def micro_batch(self, ids, labels, last, n):
        (self.model(ids, labels=labels).mean() / n).backward()

    def step(self):
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.config.clip_grad, foreach=True)
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)


class MegapmcVariant:
    def __init__(self, model, config: OptimizerConfig):
        self.ddp = DataParallel(model, config, ParallelState.single())
        self.opt = build_optimizer(self.ddp, config, ParallelState.single())

    def micro_batch(self, ids, labels, last, n):
        with contextlib.nullcontext() if last else self.ddp.no_sync():
            (self.ddp(ids, labels=labels).mean() / n).backward()

    def step(self):
        self.opt.step()
        self.opt.zero_grad()


def main(argv=None) -> dict:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    model_config = LlamaConfig(num_layers=args.num_layers, hidden_size=args.hidden_size,
                               num_attention_heads=max(1, args.hidden_size // 64),
                               ffn_hidden_size=int(args.hidden_size * 8 / 3) // 64 * 64 or 64,
                               vocab_size=args.vocab_size, max_position_embeddings=args.seq_length)
    options = TransformerOptions(attention_backend="sdpa", kernel_backend="torch")
    base = OptimizerConfig(lr=1e-4, weight_decay=0.1, clip_grad=1.0)
    variants = {
        "torch": TorchVariant(build_model(model_config, options=options), base),
        "megapmc": MegapmcVariant(build_model(model_config, options=options), base),
        "megapmc-zero1": MegapmcVariant(build_model(model_config, options=options),
                                        OptimizerConfig(**{**base.to_dict(), "use_distributed_optimizer": True})),
    }
    g = torch.Generator().manual_seed(0)
    n, b, s = args.micro_batches, args.micro_batch_size, args.seq_length
    times = {k: {"iteration": [], "step": []} for k in variants}
    for it in range(args.warmup + args.iters):
        tokens = torch.randint(0, args.vocab_size, (n, b, s + 1), generator=g)
        for name, v in variants.items():
            t0 = time.perf_counter()
            for i in range(n):
                v.micro_batch(tokens[i, :, :-1], tokens[i, :, 1:], last=i == n - 1, n=n)
            t1 = time.perf_counter()
            v.step()
            t2 = time.perf_counter()
            if it >= args.warmup:
                times[name]["iteration"].append(t2 - t0)
                times[name]["step"].append(t2 - t1)
    params = sum(p.numel() for p in variants["torch"].model.parameters())
    result = {"parameters": params, "threads": torch.get_num_threads(), "micro_batches": n,
              "tokens_per_iteration": n * b * s, "variants": {}}
    base_iter = statistics.median(times["torch"]["iteration"]) * 1e3
    base_step = statistics.median(times["torch"]["step"]) * 1e3
    print(f"{params / 1e6:.1f}M parameters, {n} micro-batches of {b}x{s} tokens, {torch.get_num_threads()} threads; "
          f"medians of {args.iters} alternated iterations")
    print(f"{'variant':<15}{'iteration ms':>14}{'vs torch':>10}{'step ms':>10}{'vs torch':>10}")
    for name, t in times.items():
        it_ms, st_ms = statistics.median(t["iteration"]) * 1e3, statistics.median(t["step"]) * 1e3
        ratios = it_ms / base_iter, st_ms / base_step
        result["variants"][name] = {"iteration_ms": it_ms, "step_ms": st_ms,
                                    "iteration_ratio": ratios[0], "step_ratio": ratios[1]}
        print(f"{name:<15}{it_ms:>14.1f}{ratios[0]:>10.2f}{st_ms:>10.1f}{ratios[1]:>10.2f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
    return result


if __name__ == "__main__":
    main()
