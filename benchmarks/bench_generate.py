"""Greedy generation throughput of the megapmc evaluation backend: KV-cached against uncached.

Same model (megapmc's LlamaModel, random weights, one process), same prompts, in the same run; the two
variants alternate repeat by repeat so load from other processes hits both alike, and medians are
reported. ``uncached`` is ``CausalLMBackend.generate`` (the whole sequence rerun for every new token);
``cached`` is ``MegapmcBackend.generate`` (prefill once, then one token per row per step). The EOS id
is a padded-vocabulary row the model can never emit, so every row generates exactly ``--new-tokens``;
the script checks that both variants produce the same tokens.

    python benchmarks/bench_generate.py [--prompt-length 256 --new-tokens 64 --batch-size 1] [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from megapmc.evaluation.backends import CausalLMBackend, MegapmcBackend
from megapmc.model import LlamaConfig, build_model


class _NeverEndingTokenizer:
    """Token ids only; ``eos_id`` is outside the real vocabulary, so generation never stops early."""

    def __init__(self, vocab_size: int):
        self.bos_id, self.eos_id = 1, vocab_size

    def encode(self, text):
        raise NotImplementedError("bench_generate feeds token ids")

    def decode(self, ids):
        raise NotImplementedError("bench_generate reads token ids")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--num-layers", type=int, default=4)
    p.add_argument("--hidden-size", type=int, default=512)
    p.add_argument("--vocab-size", type=int, default=8000)
    p.add_argument("--prompt-length", type=int, default=256)
    p.add_argument("--new-tokens", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=1)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: PyTorch's choice)")
    p.add_argument("--json", help="also write the results here")
    return p.parse_args(argv)


def main(argv=None) -> dict:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    config = LlamaConfig(num_layers=args.num_layers, hidden_size=args.hidden_size,
                         num_attention_heads=max(1, args.hidden_size // 64),
                         ffn_hidden_size=int(args.hidden_size * 8 / 3) // 64 * 64 or 64,
                         vocab_size=args.vocab_size, make_vocab_size_divisible_by=128,
                         max_position_embeddings=args.prompt_length + args.new_tokens, init_method_std=0.1)
    if config.padded_vocab_size(1) == args.vocab_size:
        raise SystemExit(f"--vocab-size {args.vocab_size}: pick one that is not a multiple of 128, so a "
                         f"padding row can serve as the unreachable EOS")
    model = build_model(config, device="cpu", dtype=torch.float32)
    backend = MegapmcBackend(model, _NeverEndingTokenizer(args.vocab_size), batch_size=args.batch_size,
                             show_progress=False)
    g = torch.Generator().manual_seed(0)
    prompts = [[1] + torch.randint(3, args.vocab_size, (args.prompt_length - 1,), generator=g).tolist()
               for _ in range(args.batch_size)]
    variants = {"uncached": lambda: CausalLMBackend.generate(backend, prompts, args.new_tokens),
                "cached": lambda: backend.generate(prompts, args.new_tokens)}
    times: dict[str, list[float]] = {name: [] for name in variants}
    tokens: dict[str, list[list[int]]] = {}
    for _ in range(args.repeats):
        for name, run in variants.items():
            t0 = time.perf_counter()
            tokens[name] = run()
            times[name].append(time.perf_counter() - t0)
    if tokens["cached"] != tokens["uncached"]:
        raise SystemExit("cached and uncached generation disagree: the KV cache is wrong")
    new = sum(len(t) for t in tokens["cached"])
    params = sum(p.numel() for p in model.parameters())
    result = {"parameters": params, "threads": torch.get_num_threads(), "batch_size": args.batch_size,
              "prompt_length": args.prompt_length, "new_tokens": new, "variants": {}}
    print(f"{params / 1e6:.1f}M parameters, {torch.get_num_threads()} threads; greedy, batch {args.batch_size}, "
          f"{args.prompt_length}-token prompts, {new} new tokens; medians of {args.repeats} alternated repeats")
    print(f"{'variant':<10}{'seconds':>10}{'tokens/s':>10}{'speed-up':>10}")
    base = statistics.median(times["uncached"])
    for name, t in times.items():
        sec = statistics.median(t)
        result["variants"][name] = {"seconds": sec, "tokens_per_s": new / sec, "speedup": base / sec}
        print(f"{name:<10}{sec:>10.2f}{new / sec:>10.1f}{base / sec:>10.2f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
    return result


if __name__ == "__main__":
    main()
