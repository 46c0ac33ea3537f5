"""Pipeline bubble on the CPU: measured against the schedule's theory, next to PP = 1.

For PP = P stages (one gloo process each, one thread each) and m = 4, 8, 16 micro-batches, this runs
the 1F1B schedule (V = 1) and the interleaved one (V model chunks per stage) on the same LLaMA-shaped
model and reports, in the same run:

* the measured bubble: the share of a step each stage spends waiting in point-to-point exchange
  (``megapmc.pipeline_parallel.p2p.communicate`` timed), averaged over the stages;
* the theory, ``(P - 1) / (V·m + P - 1)`` (``bubble_fraction``; ``(P - 1)/(m + P - 1)`` for 1F1B);
* the step time (the fastest timed step), and that of one process running the same m micro-batches
  with no pipelining (PP = 1, its bubble 0 by construction), so the speedup P·(1 - bubble) can be read.

On a shared CPU other processes steal time from the stages, which shows up as extra waiting; with
more stages than free cores the stages do not run concurrently and the measured bubble means little.

    python benchmarks/bench_pipeline.py                    # P = 2, V = 2, m = 4, 8, 16
    python benchmarks/bench_pipeline.py --json out.json
"""
from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.distributed as dist

from megapmc.model import LlamaConfig, TransformerOptions
from megapmc.parallel.state import ParallelState, initialize_parallel
from megapmc.pipeline_parallel import p2p
from megapmc.pipeline_parallel.config import PipelineConfig
from megapmc.pipeline_parallel.schedules import bubble_fraction, get_forward_backward_func
from megapmc.pipeline_parallel.stage import build_pipeline_model
from megapmc.testing.distributed import run_distributed


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pipeline-model-parallel-size", type=int, default=2)
    p.add_argument("--virtual-stages", type=int, default=2, help="model chunks per stage of the interleaved runs")
    p.add_argument("--micro-batches", default="4,8,16")
    p.add_argument("--num-layers", type=int, default=8)
    p.add_argument("--hidden-size", type=int, default=256)
    p.add_argument("--ffn-hidden-size", type=int, default=704)
    p.add_argument("--vocab-size", type=int, default=512, help="small: the stages' layers, not lm_head, dominate")
    p.add_argument("--seq-length", type=int, default=128)
    p.add_argument("--micro-batch-size", type=int, default=1)
    p.add_argument("--steps", type=int, default=5, help="timed steps per configuration")
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--json", default=None, help="also write the results to this file")
    args = p.parse_args(argv)
    args.micro_batches = [int(m) for m in args.micro_batches.split(",")]
    pp, v = args.pipeline_model_parallel_size, args.virtual_stages
    if args.num_layers % (pp * v):
        p.error(f"--num-layers {args.num_layers} must be a multiple of PP x V = {pp * v}")
    if any(m % pp for m in args.micro_batches):
        p.error(f"the interleaved schedule needs micro-batch counts that are multiples of PP = {pp}")
    return args


def _config(args) -> LlamaConfig:
    return LlamaConfig(num_layers=args.num_layers, hidden_size=args.hidden_size, num_attention_heads=8,
                       ffn_hidden_size=args.ffn_hidden_size, vocab_size=args.vocab_size,
                       max_position_embeddings=args.seq_length, make_vocab_size_divisible_by=64)


def _micro_batches(args, m: int) -> list[dict]:
    g = torch.Generator().manual_seed(0)
    shape = (args.micro_batch_size, args.seq_length)
    return [{"input_ids": torch.randint(0, args.vocab_size, shape, generator=g),
             "labels": torch.randint(0, args.vocab_size, shape, generator=g),
             "loss_mask": torch.ones(shape)} for _ in range(m)]


def _time_steps(args, model, pipeline, parallel, m: int, waited: list[float]) -> tuple[float, float]:
    """The fastest step's time and the share of it spent in p2p waits, for m micro-batches: the step
    least disturbed by other processes on a shared CPU."""
    config = _config(args)
    func = get_forward_backward_func(pipeline, config.num_layers, m)
    micro_batches = _micro_batches(args, m)
    times, waits = [], []
    for step in range(args.warmup + args.steps):
        if dist.is_initialized():
            dist.barrier()
        waited[0] = 0.0
        start = time.perf_counter()
        func(model, None, micro_batches, parallel, 1.0 / m)
        elapsed = time.perf_counter() - start
        model.zero_grad(set_to_none=True)
        if step >= args.warmup:
            times.append(elapsed)
            waits.append(waited[0] / elapsed)
    best = min(range(len(times)), key=times.__getitem__)
    return times[best], waits[best]


def _stage(rank, world_size, args, out_dir):
    parallel = initialize_parallel(1, world_size)
    waited = [0.0]
    communicate = p2p.communicate

    def timed(*a, **kw):  # every exchange of the schedules goes through communicate
        start = time.perf_counter()
        try:
            return communicate(*a, **kw)
        finally:
            waited[0] += time.perf_counter() - start
    p2p.communicate = timed
    options = TransformerOptions(attention_backend="math", kernel_backend="torch")
    results = {}
    for v in (1, args.virtual_stages):
        n = args.num_layers // (world_size * v) if v > 1 else None
        pipeline = PipelineConfig(world_size, num_layers_per_virtual_pipeline_stage=n)
        model = build_pipeline_model(_config(args), parallel, options, pipeline, seed=0)
        for m in args.micro_batches:
            results[f"{v},{m}"] = _time_steps(args, model, pipeline, parallel, m, waited)
    (Path(out_dir) / f"stage{rank}.json").write_text(json.dumps(results))


def main(argv=None) -> int:
    args = parse_args(argv)
    pp, vv = args.pipeline_model_parallel_size, args.virtual_stages
    with tempfile.TemporaryDirectory() as out:
        run_distributed(_stage, pp, args, out)
        stages = [json.loads((Path(out) / f"stage{r}.json").read_text()) for r in range(pp)]
    torch.set_num_threads(1)
    single = build_pipeline_model(_config(args), ParallelState.single(),
                                  TransformerOptions(attention_backend="math", kernel_backend="torch"),
                                  PipelineConfig(), seed=0)
    rows = []
    for m in args.micro_batches:
        pp1, _ = _time_steps(args, single, PipelineConfig(), ParallelState.single(), m, [0.0])
        for v in (1, vv):
            key = f"{v},{m}"
            step = max(s[key][0] for s in stages)
            measured = statistics.mean(s[key][1] for s in stages)
            rows.append({"pp": pp, "v": v, "m": m, "theory": bubble_fraction(pp, m, v), "measured": measured,
                         "step_s": step, "pp1_step_s": pp1, "speedup": pp1 / step})
    print(f"pipeline bubble, {args.num_layers} layers, hidden {args.hidden_size}, seq {args.seq_length}, "
          f"micro-batch {args.micro_batch_size}; one gloo process and one thread per stage")
    print(f"{'PP':>3} {'V':>2} {'m':>3} {'theory':>7} {'measured':>9} {'step s':>7} {'PP=1 s':>7} {'speedup':>8} "
          f"{'ideal':>6}")
    for r in rows:
        print(f"{r['pp']:>3} {r['v']:>2} {r['m']:>3} {r['theory']:>7.3f} {r['measured']:>9.3f} {r['step_s']:>7.3f} "
              f"{r['pp1_step_s']:>7.3f} {r['speedup']:>8.2f} {r['pp'] * (1 - r['theory']):>6.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
