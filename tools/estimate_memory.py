"""Per-GPU memory of a training configuration, and which TP × PP × DP layouts of a cluster fit.

    python tools/estimate_memory.py --model llama-13b --tensor-model-parallel-size 8 \
        --data-parallel-size 4 --micro-batch-size 1 --seq-length 2048 \
        --recompute-granularity selective --use-distributed-optimizer [--json]
    python tools/estimate_memory.py --model llama2-70b --tensor-model-parallel-size 8 \
        --pipeline-model-parallel-size 4 --data-parallel-size 1 --seq-length 4096 --global-batch-size 3200 \
        --recompute-granularity selective --sequence-parallel --use-distributed-optimizer --pipeline-sizes 1,2,4,8

Parameters are counted on the meta device with the real model; the formula is in megapmc/model/memory.py.
With pipelining the estimate is that of the fullest stage (every stage is listed), with the 1F1B (or
interleaved) in-flight micro-batches and the pipeline bubble. The layouts table covers TP in 1, 2, 4, 8
and PP in --pipeline-sizes with DP = --num-gpus / (TP × PP) (the paper: 32 A100-80GB).
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
    p.add_argument("--pipeline-model-parallel-size", type=int, default=1)
    p.add_argument("--num-layers-per-virtual-pipeline-stage", type=int, help="interleaved schedule")
    p.add_argument("--decoder-first-pipeline-num-layers", type=int)
    p.add_argument("--decoder-last-pipeline-num-layers", type=int)
    p.add_argument("--global-batch-size", type=int,
                   help="gives the micro-batches per DP rank: the pipeline bubble and the in-flight bound")
    p.add_argument("--pipeline-sizes", default="1", help="PP sizes of the layouts table, e.g. 1,2,4,8")
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
    from megapmc.model.memory import GIB, estimate_stages, format_layouts, layouts_for
    from megapmc.optim.config import OptimizerConfig
    from megapmc.pipeline_parallel.config import PipelineConfig

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
        pipeline = PipelineConfig(args.pipeline_model_parallel_size, args.num_layers_per_virtual_pipeline_stage,
                                  args.decoder_first_pipeline_num_layers, args.decoder_last_pipeline_num_layers)
        try:
            pipeline_sizes = tuple(int(x) for x in args.pipeline_sizes.split(","))
        except ValueError:
            raise ValueError(f"--pipeline-sizes {args.pipeline_sizes!r}: give comma-separated integers, e.g. 1,2,4,8")
        micro_batches = None
        if args.global_batch_size is not None:
            per_step = args.micro_batch_size * args.data_parallel_size
            if args.global_batch_size % per_step:
                raise ValueError(f"--global-batch-size {args.global_batch_size} is not a multiple of --micro-batch-size "
                                 f"x --data-parallel-size = {per_step}")
            micro_batches = args.global_batch_size // per_step
        stages = estimate_stages(config, args.tensor_model_parallel_size, args.data_parallel_size,
                                 args.micro_batch_size, args.seq_length, options, optimizer, pipeline, micro_batches)
        estimate = max(stages, key=lambda e: e.total)
        layouts = layouts_for(config, args.num_gpus, args.micro_batch_size, args.seq_length, options, optimizer,
                              pipeline_sizes=pipeline_sizes, global_batch_size=args.global_batch_size)
    except ValueError as e:
        print(f"estimate_memory.py: error: {e}", file=sys.stderr)
        return 2
    fits = estimate.fits(args.gpu_memory_gib, args.reserve_fraction)
    if args.json:
        out = {"model": args.model, **estimate.to_dict(), "gpu_memory_gib": args.gpu_memory_gib,
               "reserve_fraction": args.reserve_fraction, "fits": fits,
               "stages": [{"pipeline_rank": e.pipeline_rank, "params_per_rank": e.params_per_rank,
                           "in_flight": e.in_flight, "activations": e.activations, "total": e.total}
                          for e in stages],
               "layouts": [{"tensor_model_parallel_size": e.tensor_model_parallel_size,
                            "pipeline_model_parallel_size": e.pipeline_model_parallel_size,
                            "data_parallel_size": e.data_parallel_size, "total": e.total,
                            "total_gib": round(e.total / 2**30, 3),
                            "fits": e.fits(args.gpu_memory_gib, args.reserve_fraction)} for e in layouts]}
        print(json.dumps(out, indent=2))
        return 0
    print(f"{args.model}: {estimate}")
    if len(stages) > 1:
        print("per stage: " + ", ".join(f"{e.pipeline_rank}: {e.total / GIB:.2f} GiB ({e.in_flight} in flight)"
                                         for e in stages))
    print(f"fits one {args.gpu_memory_gib:g} GiB GPU: {'yes' if fits else 'no'}\n")
    print(f"{args.num_gpus} GPUs as TP x {'PP x ' if max(pipeline_sizes) > 1 else ''}DP (same micro-batch, "
          f"recompute, SP and optimizer settings):")
    print(format_layouts(layouts, args.gpu_memory_gib, args.reserve_fraction))
    return 0


if __name__ == "__main__":
    sys.exit(main())
