"""Pipeline bubble on the CPU: measured, simulated and the schedule's theory, next to PP = 1.

For P stages (one gloo process and one thread each) and m = 4, 8, 16 micro-batches, this runs 1F1B
(V = 1) and interleaved 1F1B (V model chunks per stage) on one LLaMA-shaped model, and PP = 1 on
stage 0's process (the other stages wait in a barrier), the configurations alternated step by step so
that load from other processes falls on all of them alike. Each schedule runs with a
``ComputeTimer``: every forward and backward of a chunk on a micro-batch is a timed region, on the
clock all processes share. Per configuration, from the least disturbed step (the shortest):

* ``measured``: the bubble, ``1 - busy / step`` per stage (``step``: the first region's start to the
  last one's end over all stages; ``busy``: the stage's own regions), averaged over the stages;
* ``simulated``: the same schedule's timeline (``timeline.simulate``) when every region takes the time
  it took in that step (the median per stage, chunk and direction), with no communication: what the
  schedule gives these stages, however unequal;
* ``theory``: ``(P - 1) / (V·m + P - 1)`` (``bubble_fraction``), for equal stages and free communication;
* ``speedup``: PP = 1's step over the pipelined step, against the ideal ``P·(1 - theory)``;
* ``cpu/wall``: the CPU time the stages' threads got inside their regions over the regions' wall time
  (the lower stage): below 1 other processes held the cores while a stage computed, and ``measured``
  then counts their time as bubble.

``measured - simulated`` is what the schedule's theory leaves out: point-to-point latency (the gloo
ping-pong of one activation is printed), Python bookkeeping between regions, and time the stages lose to
other processes. ``delays`` measures it directly: the time the regions started after they could have
(``timeline.start_delays``: the stage free and the input there), summed per stage, as a share of the
step (averaged over the stages), so ``measured`` is about ``simulated + delays``; ``delay ms`` is that
delay per region, against the p2p time of one activation. The stages are balanced: vocabulary 64, so the embedding (stage 0) and ``lm_head`` and
loss (last stage) cost next to nothing beside four decoder layers; the printed per-stage compute
shows it. With more stages than free cores the stages cannot run side by side and the numbers say so.

    python benchmarks/bench_pipeline.py                    # P = 2, V = 2, m = 4, 8, 16
    python benchmarks/bench_pipeline.py --steps 20 --json out.json

Measured on the development machine (2 cores shared with other jobs, load average 4.7 before and 4.3
after, under ``nice -n 10``; cpu/wall 0.98-0.99; stages 141.7 / 146.5 ms per micro-batch), ``--steps 8``:

     V   m  theory  simul.  measured meas/theory meas/simul. delays  step s  PP=1 s  speedup  ideal
     1   4   0.200   0.203     0.212        1.06        1.04  0.007   0.710   1.099     1.55   1.60
     2   4   0.111   0.128     0.148        1.33        1.15  0.029   0.698   1.099     1.57   1.78
     1   8   0.111   0.122     0.140        1.26        1.14  0.017   1.366   2.284     1.67   1.78
     2   8   0.059   0.071     0.117        1.99        1.66  0.038   1.455   2.284     1.57   1.88
     1  16   0.059   0.075     0.087        1.47        1.16  0.007   2.524   4.480     1.78   1.88
     2  16   0.030   0.045     0.067        2.21        1.48  0.022   2.461   4.480     1.82   1.94

``measured ≈ simulated + delays``: what is left above the theory is the regions' inequality (in
``simulated``) and late starts (``delays``). README.md (Benchmarks) says more.
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
from megapmc.pipeline_parallel.timeline import (
    ComputeTimer,
    Region,
    bubble,
    exchange_groups,
    simulate,
    start_delays,
    step_time,
)
from megapmc.testing.distributed import run_distributed

OPTIONS = TransformerOptions(attention_backend="math", kernel_backend="torch")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pipeline-model-parallel-size", type=int, default=2)
    p.add_argument("--virtual-stages", type=int, default=2, help="model chunks per stage of the interleaved runs")
    p.add_argument("--micro-batches", default="4,8,16")
    p.add_argument("--num-layers", type=int, default=8)
    p.add_argument("--hidden-size", type=int, default=512,
                   help="large enough that a region (tens of ms) dwarfs the exchange and a late wake-up")
    p.add_argument("--ffn-hidden-size", type=int, default=1408)
    p.add_argument("--vocab-size", type=int, default=64, help="small: the decoder layers, not lm_head, fill the stages")
    p.add_argument("--seq-length", type=int, default=128)
    p.add_argument("--micro-batch-size", type=int, default=1)
    p.add_argument("--steps", type=int, default=10, help="timed steps per configuration")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--json", default=None, help="also write the results to this file")
    args = p.parse_args(argv)
    args.micro_batches = [int(m) for m in args.micro_batches.split(",")]
    pp, v = args.pipeline_model_parallel_size, args.virtual_stages
    if pp < 2:
        p.error("--pipeline-model-parallel-size must be >= 2 (PP = 1 is the baseline every run measures)")
    if v < 2:
        p.error("--virtual-stages must be >= 2 (the 1F1B rows, V = 1, are always measured)")
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


def _p2p_latency(parallel: ParallelState, shape, repeats: int = 50) -> float:
    """One-way time of one activation between stages 0 and 1 (the fastest of ``repeats`` ping-pongs)."""
    x = torch.zeros(shape)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        if parallel.pp_rank == 0:
            p2p.send_forward(parallel, x)
            p2p.recv_backward(parallel, shape, torch.float32, "cpu")
        elif parallel.pp_rank == 1:
            p2p.recv_forward(parallel, shape, torch.float32, "cpu")
            p2p.send_backward(parallel, x)
        best = min(best, (time.perf_counter() - start) / 2)
    return best


def _stage(rank, world_size, args, out_dir):
    """Every configuration's timed regions on this stage, step by step, configurations alternated."""
    parallel = initialize_parallel(1, world_size)
    config = _config(args)
    runs = {}  # name -> (model, pipeline, parallel)
    if rank == 0:
        runs["pp1"] = (build_pipeline_model(config, ParallelState.single(), OPTIONS, PipelineConfig(), seed=0),
                       PipelineConfig(), ParallelState.single())
    for v in (1, args.virtual_stages):
        n = args.num_layers // (world_size * v) if v > 1 else None
        pipeline = PipelineConfig(world_size, num_layers_per_virtual_pipeline_stage=n)
        runs[f"v{v}"] = (build_pipeline_model(config, parallel, OPTIONS, pipeline, seed=0), pipeline, parallel)
    batches = {m: _micro_batches(args, m) for m in args.micro_batches}
    regions = {f"{name},{m}": [] for name in runs for m in args.micro_batches}
    for step in range(args.warmup + args.steps):
        for m in args.micro_batches:
            for name in ("pp1", "v1", f"v{args.virtual_stages}"):
                dist.barrier()
                if name not in runs:
                    continue  # PP = 1 runs on stage 0 alone
                model, pipeline, state = runs[name]
                timer = ComputeTimer()
                get_forward_backward_func(pipeline, config.num_layers, m)(model, None, batches[m], state, 1.0 / m,
                                                                           timer=timer)
                model.zero_grad(set_to_none=True)
                if step >= args.warmup:
                    regions[f"{name},{m}"].append([(r.kind, r.chunk, r.micro_batch, r.start, r.end, r.cpu)
                                                   for r in timer.regions])
    dist.barrier()
    latency = _p2p_latency(parallel, (args.seq_length, args.micro_batch_size, args.hidden_size))
    (Path(out_dir) / f"stage{rank}.json").write_text(json.dumps({"regions": regions, "latency": latency}))


def _median_durations(stages: list[list[Region]]):
    """``(rank, op) -> s``: the median time of that stage's regions of the same chunk and direction."""
    table = {}
    for rank, regions in enumerate(stages):
        for kind in "FB":
            for chunk in {x.chunk for x in regions}:
                times = [x.duration for x in regions if x.kind == kind and x.chunk == chunk]
                table[rank, kind, chunk] = statistics.median(times)
    return lambda rank, op: table[rank, op[0], op[1]]


def _analyse(args, stages: list[dict]) -> tuple[list[dict], dict]:
    pp, vv = args.pipeline_model_parallel_size, args.virtual_stages
    rows, balance = [], {}

    def steps_of(key, ranks):
        n = len(stages[0]["regions"][key])
        return [[[Region(*r) for r in stages[rank]["regions"][key][i]] for rank in ranks] for i in range(n)]

    for m in args.micro_batches:
        pp1 = min(step_time(s) for s in steps_of(f"pp1,{m}", [0]))
        for v in (1, vv):
            steps = steps_of(f"v{v},{m}", range(pp))
            spans = [step_time(s) for s in steps]
            best = steps[spans.index(min(spans))]
            measured = bubble(best)
            duration = _median_durations(best)
            groups = [exchange_groups(pp, r, m, v) for r in range(pp)]
            simulated = simulate(groups, duration)
            delays = start_delays(best, groups)
            per_stage = [sum(x.duration for x in stage) / m for stage in best]
            cpu_share = min(sum(x.cpu for x in stage) / sum(x.duration for x in stage) for stage in best)
            if v == 1:
                balance[m] = per_stage
            rows.append({
                "pp": pp, "v": v, "m": m, "theory": bubble_fraction(pp, m, v),
                "simulated": statistics.mean(bubble(simulated)),
                "start_delay_s": statistics.mean(d for stage in delays for d in stage),
                "delay_share": statistics.mean(sum(stage) for stage in delays) / min(spans),
                "measured": statistics.mean(measured), "measured_per_stage": measured,
                "measured_median_step": statistics.median(statistics.mean(bubble(s)) for s in steps),
                "step_s": min(spans), "step_median_s": statistics.median(spans),
                "simulated_step_s": step_time(simulated), "pp1_step_s": pp1, "speedup": pp1 / min(spans),
                "ideal_speedup": pp * (1 - bubble_fraction(pp, m, v)), "compute_per_micro_batch_s": per_stage,
                "cpu_share": cpu_share,
            })
    return rows, balance


def _loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "n/a"


def main(argv=None) -> int:
    args = parse_args(argv)
    pp = args.pipeline_model_parallel_size
    load_before, started = _loadavg(), time.time()
    with tempfile.TemporaryDirectory() as out:
        run_distributed(_stage, pp, args, out)
        stages = [json.loads((Path(out) / f"stage{r}.json").read_text()) for r in range(pp)]
    rows, balance = _analyse(args, stages)
    latency = stages[0]["latency"]
    print(f"pipeline bubble, {args.num_layers} layers, hidden {args.hidden_size}, vocab {args.vocab_size}, "
          f"seq {args.seq_length}, micro-batch {args.micro_batch_size}; one gloo process and one thread per stage; "
          f"best of {args.steps} steps after {args.warmup} warm-up; {time.time() - started:.0f} s, "
          f"load average {load_before} before, {_loadavg()} after")
    m0 = args.micro_batches[-1]
    print(f"compute per micro-batch (F + B), by stage: "
          + ", ".join(f"{t * 1e3:.1f} ms" for t in balance[m0]) + f" (m = {m0}); "
          f"p2p of one activation: {latency * 1e6:.0f} us")
    print(f"{'PP':>3} {'V':>2} {'m':>3} {'theory':>7} {'simul.':>7} {'measured':>9} {'meas/theory':>11} "
          f"{'meas/simul.':>11} {'delays':>6} {'delay ms':>8} {'step s':>7} {'PP=1 s':>7} {'speedup':>8} "
          f"{'ideal':>6} {'cpu/wall':>8}")
    for r in rows:
        print(f"{r['pp']:>3} {r['v']:>2} {r['m']:>3} {r['theory']:>7.3f} {r['simulated']:>7.3f} "
              f"{r['measured']:>9.3f} {r['measured'] / r['theory']:>11.2f} {r['measured'] / r['simulated']:>11.2f} "
              f"{r['delay_share']:>6.3f} {r['start_delay_s'] * 1e3:>8.2f} {r['step_s']:>7.3f} "
              f"{r['pp1_step_s']:>7.3f} {r['speedup']:>8.2f} {r['ideal_speedup']:>6.2f} {r['cpu_share']:>8.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": rows, "p2p_latency_s": latency, "load_before": load_before,
                                               "load_after": _loadavg()}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
