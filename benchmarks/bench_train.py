"""Training-step throughput of megapmc's LlamaModel vs Hugging Face's LlamaForCausalLM, same config.

For each dtype (fp32, bf16) this measures, in the same run:
* this machine's matrix-multiply peak (best of several square GEMMs, GFLOP/s);
* one full training step (forward, loss, backward, AdamW step) of both models, alternated step by step
  so that load from other processes hits both alike; the best (minimum) step time is reported, the
  estimate least disturbed by other processes (the median is in the JSON);
* tokens/s, achieved GFLOP/s from the one FLOPs formula (``megapmc.model.flops``), its fraction of the
  measured peak, and megapmc / transformers as a ratio (target: >= 1).

    python benchmarks/bench_train.py                 # CPU defaults: 4 layers, hidden 512, vocab 32000
    python benchmarks/bench_train.py --json out.json
"""
from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from megapmc.model import LlamaConfig, TransformerOptions, build_model
from megapmc.model.flops import flops_per_token

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--num-layers", type=int, default=4)
    p.add_argument("--hidden-size", type=int, default=512)
    p.add_argument("--num-attention-heads", type=int, default=8)
    p.add_argument("--num-key-value-heads", type=int, default=None)
    p.add_argument("--ffn-hidden-size", type=int, default=1376)
    p.add_argument("--vocab-size", type=int, default=32000)
    p.add_argument("--seq-length", type=int, default=256)
    p.add_argument("--micro-batch-size", type=int, default=2)
    p.add_argument("--steps", type=int, default=6, help="timed steps per model")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--dtypes", default="fp32,bf16", help="comma-separated subset of fp32,bf16")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    p.add_argument("--json", default=None, help="also write the results to this file")
    args = p.parse_args(argv)
    for name in args.dtypes.split(","):
        if name not in DTYPES:
            p.error(f"--dtypes: {name!r} is not one of {', '.join(DTYPES)}")
    return args


def matmul_peak_gflops(dtype: torch.dtype, sizes=(1024, 2048, 4096), repeats: int = 4) -> float:
    """This machine's matmul peak now: the best GFLOP/s over square GEMMs of several sizes, as ``A @ B``
    and as ``A @ Bᵀ`` (``F.linear``'s form, which some CPU kernels, e.g. bf16, run much faster)."""
    best = 0.0
    for n in sizes:
        a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
        for fn in (torch.mm, torch.nn.functional.linear):
            fn(a, b)
            for _ in range(repeats):
                t0 = time.perf_counter()
                fn(a, b)
                best = max(best, 2 * n ** 3 / (time.perf_counter() - t0) / 1e9)
    return best


def _hf_model(config: LlamaConfig, dtype: torch.dtype):
    import transformers

    hf_config = transformers.LlamaConfig(**{k: v for k, v in config.to_hf().items() if k != "architectures"})
    hf_config._attn_implementation = "sdpa"  # transformers' fastest CPU path
    return transformers.LlamaForCausalLM(hf_config).to(dtype).train()


def _megapmc_step(model, ids, labels):
    loss = model(ids, labels=labels).mean()
    loss.backward()
    return loss


def _hf_step(model, ids, labels):
    loss = model(input_ids=ids, labels=labels).loss  # shifts the labels itself: pass the inputs
    loss.backward()
    return loss


def bench_dtype(config: LlamaConfig, args, dtype: torch.dtype) -> dict:
    torch.manual_seed(0)
    b, s = args.micro_batch_size, args.seq_length
    tokens = torch.randint(0, config.vocab_size, (b, s + 1))
    ids, labels = tokens[:, :-1], tokens[:, 1:]

    ours = build_model(config, options=TransformerOptions(), dtype=dtype)
    theirs = _hf_model(config, dtype)
    runs = {
        "megapmc": (ours, lambda: _megapmc_step(ours, ids, labels)),
        # HF shifts inside: give it the s+1 tokens' first s as inputs and as labels
        "transformers": (theirs, lambda: _hf_step(theirs, ids, ids)),
    }
    optims = {name: torch.optim.AdamW(m.parameters(), lr=1e-5, foreach=True) for name, (m, _) in runs.items()}
    times = {name: [] for name in runs}
    for step in range(args.warmup + args.steps):
        for name, (model, fn) in runs.items():  # alternate: load drift hits both models alike
            t0 = time.perf_counter()
            fn()
            optims[name].step()
            optims[name].zero_grad(set_to_none=True)
            if step >= args.warmup:
                times[name].append(time.perf_counter() - t0)

    peak = matmul_peak_gflops(dtype)
    flops = flops_per_token(config, s)
    result = {"dtype": str(dtype).replace("torch.", ""), "matmul_peak_gflops": peak,
              "kernels": ours.kernels.names}
    for name, ts in times.items():
        step_time = min(ts)
        tps = b * s / step_time
        result[name] = {"step_s": step_time, "median_step_s": statistics.median(ts), "tokens_per_s": tps,
                        "gflops": flops * tps / 1e9, "fraction_of_peak": flops * tps / 1e9 / peak}
    result["ratio_megapmc_over_transformers"] = (
        result["megapmc"]["tokens_per_s"] / result["transformers"]["tokens_per_s"])
    return result


def main(argv=None) -> list[dict]:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    config = LlamaConfig(num_layers=args.num_layers, hidden_size=args.hidden_size,
                         num_attention_heads=args.num_attention_heads, num_key_value_heads=args.num_key_value_heads,
                         ffn_hidden_size=args.ffn_hidden_size, vocab_size=args.vocab_size,
                         max_position_embeddings=max(2048, args.seq_length))
    print(f"model: {config.num_layers} layers, hidden {config.hidden_size}, heads {config.num_attention_heads}"
          f"/{config.num_key_value_heads} KV, ffn {config.ffn_hidden_size}, vocab {config.vocab_size}; "
          f"micro-batch {args.micro_batch_size} × seq {args.seq_length}; {torch.get_num_threads()} threads; "
          f"best of {args.steps} steps (fwd+bwd+AdamW)")
    results = []
    header = f"{'dtype':5} {'model':13} {'step s':>8} {'tokens/s':>9} {'GFLOP/s':>8} {'of peak':>8} {'peak GFLOP/s':>13}"
    print(header)
    for name in args.dtypes.split(","):
        r = bench_dtype(config, args, DTYPES[name])
        results.append(r)
        for model in ("megapmc", "transformers"):
            m = r[model]
            print(f"{name:5} {model:13} {m['step_s']:8.3f} {m['tokens_per_s']:9.0f} {m['gflops']:8.1f} "
                  f"{m['fraction_of_peak']:8.1%} {r['matmul_peak_gflops']:13.1f}")
        print(f"{name:5} {'ratio':13} megapmc / transformers tokens/s = {r['ratio_megapmc_over_transformers']:.2f}"
              f"   (megapmc kernels: {', '.join(f'{k}={v}' for k, v in r['kernels'].items())})")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    return results


if __name__ == "__main__":
    main()
