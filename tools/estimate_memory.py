"""Per-GPU memory of a training configuration, and which TP × DP layouts of a cluster fit.

    python tools/estimate_memory.py --model llama-13b --tensor-model-parallel-size 8 \
        --data-parallel-size 4 --micro-batch-size 1 --seq-length 2048 \
        --recompute-granularity selective --use-distributed-optimizer [--json]

Parameters are counted on the meta device with the real model; the formula is in megapmc/model/memory.py.
The layouts table covers TP in 1, 2, 4, 8 with DP = --num-gpus / TP (the paper: 32 A100-80GB).
"""
from __future__ import annotations

import argparse
import json
import sys

from megapmc.model.config import PRESETS, LlamaConfig


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, choices=sorted(PRESETS), help="model preset (shape)")
    p.add_argument("--vocab-size", type=int, help="tokenizer vocabulary (default: the preset's; "
                   "PMC-LLaMA's tokenizer has 32003)")
    p.add_argument("--tensor-model-parallel-size", type=int, default=1)
    p.add_argument("--data-parallel-size", type=int, default=1)
    p.add_argument("--micro-batch-size", type=int, default=1)
    p.add_argument("--seq-length", type=int, default=2048)
    p.add_argument("--recompute-granularity", choices=("none", "selective", "full"), default="none")
    p.add_argument("--recompute-method", choices=("uniform", "block"), default="uniform")
    p.add_argument("--recompute-num-layers", type=int, default=1)
    p.add_argument("--sequence-parallel", action="store_true")
    p.add_argument("--use-distributed-optimizer", action="store_true")
    p.add_argument("--bf16", action=argparse.BooleanOptionalAction, default=True,
                   help="bf16 weights and compute with fp32 masters (default; --no-bf16 for fp32)")
    p.add_argument("--attention-backend", default="auto",
                   help="math keeps the s×s probabilities; the others (flash, sdpa, auto) do not")
    p.add_argument("--num-gpus", type=int, default=32, help="GPUs of the layouts table (default: the paper's 32)")
    p.add_argument("--gpu-memory-gib", type=float, default=80.0, help="memory per GPU (default: A100-80GB)")
    p.add_argument("--reserve-fraction", type=float, default=0.1,
                   help="share of each GPU kept for the CUDA context, allocator and NCCL buffers")
    p.add_argument("--json", action="store_true", help="print JSON (params_total, params_per_rank, breakdown)")
    return p


def main(argv: list[str] | None = None) -> int:
    from megapmc.model.llama import TransformerOptions
    from megapmc.model.memory import estimate_memory, format_layouts, layouts_for
    from megapmc.optim.config import OptimizerConfig

    args = build_parser().parse_args(argv)
    try:
        config = LlamaConfig.from_name(args.model, **({"vocab_size": args.vocab_size} if args.vocab_size else {}))
        options = TransformerOptions(
            attention_backend=args.attention_backend,
            recompute_granularity=None if args.recompute_granularity == "none" else args.recompute_granularity,
            recompute_method=args.recompute_method, recompute_num_layers=args.recompute_num_layers,
            sequence_parallel=args.sequence_parallel)
        optimizer = OptimizerConfig(bf16=args.bf16, use_distributed_optimizer=args.use_distributed_optimizer)
        if not 0 <= args.reserve_fraction < 1:
            raise ValueError(f"--reserve-fraction must be in [0, 1), got {args.reserve_fraction}")
        estimate = estimate_memory(config, args.tensor_model_parallel_size, args.data_parallel_size,
                                   args.micro_batch_size, args.seq_length, options, optimizer)
        layouts = layouts_for(config, args.num_gpus, args.micro_batch_size, args.seq_length, options, optimizer)
    except ValueError as e:
        print(f"estimate_memory.py: error: {e}", file=sys.stderr)
        return 2
    fits = estimate.fits(args.gpu_memory_gib, args.reserve_fraction)
    if args.json:
        out = {"model": args.model, **estimate.to_dict(), "gpu_memory_gib": args.gpu_memory_gib,
               "reserve_fraction": args.reserve_fraction, "fits": fits,
               "layouts": [{"tensor_model_parallel_size": e.tensor_model_parallel_size,
                            "data_parallel_size": e.data_parallel_size, "total": e.total,
                            "total_gib": round(e.total / 2**30, 3),
                            "fits": e.fits(args.gpu_memory_gib, args.reserve_fraction)} for e in layouts]}
        print(json.dumps(out, indent=2))
        return 0
    print(f"{args.model}: {estimate}")
    print(f"fits one {args.gpu_memory_gib:g} GiB GPU: {'yes' if fits else 'no'}\n")
    print(f"{args.num_gpus} GPUs as TP x DP (same micro-batch, recompute, SP and optimizer settings):")
    print(format_layouts(layouts, args.gpu_memory_gib, args.reserve_fraction))
    return 0


if __name__ == "__main__":
    sys.exit(main())
