"""GPU check, one command for a session lent a GPU (run through benchmarks/gpu_check.sh; < 8 minutes).

1. Every CUDA kernel path (attention: flash / sdpa, packed and not; RMSNorm, SwiGLU, RoPE, cross-entropy:
   liger / apex / compile / torch; RMSNorm also transformer-engine's) against the plain PyTorch reference
   run in fp32: relative error of the outputs and of the input gradients, in bf16 and fp32. Backends whose
   package is absent are listed as such.
2. MFU of 13B-shaped decoder layers (hidden 5120, 40 heads, ffn 13824, seq 2048, bf16), forward + backward,
   for each available backend combination: model TFLOP/s from the one FLOPs formula (decoder-layer part:
   ``6·N_layer + 12·h·s`` per token and layer) over the datasheet peak and over the GEMM peak measured here.

Prints one table; ``--json PATH`` also writes it. A section that would overrun ``--time-limit`` is cut
short and says so.
"""
from __future__ import annotations

import argparse
import json
import sys
import time

import torch

from megapmc.kernels import KernelUnavailableError, select_kernels
from megapmc.testing.kernel_check import Shapes, all_backends, compare
from megapmc.model import LlamaConfig, TransformerOptions, build_model
from megapmc.model.flops import peak_tflops_for_device


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--time-limit", type=float, default=420.0, help="seconds for the whole check")
    p.add_argument("--layers", type=int, default=4, help="13B-shaped decoder layers timed together")
    p.add_argument("--micro-batch-size", type=int, default=2)
    p.add_argument("--seq-length", type=int, default=2048)
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--json", default=None)
    p.add_argument("--device", default="cuda", help="cpu: a quick dry run of the script itself")
    p.add_argument("--model", default="llama-13b", help="preset whose layer shape is timed")
    return p.parse_args(argv)


class Deadline:
    def __init__(self, seconds: float):
        self.end = time.monotonic() + seconds

    def left(self) -> float:
        return self.end - time.monotonic()


def _sync(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def kernel_rows(deadline: Deadline, device) -> list[dict]:
    rows = []
    for dtype in (torch.bfloat16, torch.float32):
        for op, backend in all_backends():
            for packed in ((False, True) if op == "attention" else (False,)):
                row = {"op": op + (" packed" if packed else ""), "backend": backend,
                       "dtype": str(dtype).replace("torch.", "")}
                if backend == "flash" and dtype == torch.float32:
                    row["status"] = "n/a (no fp32 kernels)"
                elif backend == "compile" and (dtype == torch.float32 or torch.device(device).type != "cuda"):
                    row["status"] = "n/a (bf16 on CUDA only, to save compile time)"
                elif deadline.left() < 200:  # keep time for the MFU section
                    row["status"] = "skipped: time limit"
                else:
                    try:
                        errors = compare(op, backend, device, dtype, Shapes(seq=512), packed=packed)
                    except Exception as e:  # one broken backend must not hide the others' results
                        errors = {"skipped": f"error: {type(e).__name__}: {str(e).splitlines()[0][:80]}"}
                    if "skipped" in errors:
                        row["status"] = errors["skipped"]
                    else:
                        tol = 2e-2 if dtype == torch.bfloat16 else 2e-3
                        row.update(errors)
                        row["status"] = "ok" if max(errors.values()) < tol else f"FAIL (tolerance {tol})"
                rows.append(row)
    return rows


def gemm_peak_tflops(device, n: int = 8192, repeats: int = 10) -> float:
    a = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    b = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    for _ in range(2):
        a @ b
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(repeats):
        a @ b
    _sync(device)
    return 2 * n ** 3 * repeats / (time.perf_counter() - t0) / 1e12


def layer_flops_per_token(config: LlamaConfig, seq_length: int) -> float:
    """The decoder-layer part of ``6·N + 12·L·h·s`` (no embedding lookup, no output layer)."""
    h, d, f = config.hidden_size, config.head_dim, config.ffn_hidden_size
    n_layer = h * (config.num_attention_heads + 2 * config.num_key_value_heads) * d \
        + config.num_attention_heads * d * h + 3 * h * f
    return config.num_layers * (6.0 * n_layer + 12.0 * h * seq_length)


def time_layers(options: TransformerOptions, args) -> dict:
    config = LlamaConfig.from_name(args.model, num_layers=args.layers, vocab_size=128)
    model = build_model(config, options=options, device=args.device, dtype=torch.bfloat16)
    s, b = args.seq_length, args.micro_batch_size
    x = torch.randn(s, b, config.hidden_size, device=args.device, dtype=torch.bfloat16, requires_grad=True)
    grad = torch.randn_like(x)
    cos, sin = model.rotary(None, s, x.device, x.dtype)
    mask = model.kernels.attention.prepare(None, s, x.device)

    def step():
        y = x
        for layer in model.layers:
            y = layer(y, cos, sin, mask)
        y.backward(grad)

    for _ in range(3):  # warm-up: compilation, autotuning, allocator
        step()
    _sync(args.device)
    t0 = time.perf_counter()
    for _ in range(args.steps):
        step()
    _sync(args.device)
    step_s = (time.perf_counter() - t0) / args.steps
    tflops = layer_flops_per_token(config, s) * s * b / step_s / 1e12
    cuda = torch.device(args.device).type == "cuda"
    result = {"kernels": model.kernels.names, "step_ms": step_s * 1e3, "tflops": tflops,
              "max_memory_gb": torch.cuda.max_memory_allocated() / 2 ** 30 if cuda else 0.0}
    del model, x, grad
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    return result


LAYER_OPS = ("attention", "rms_norm", "swiglu", "rope")  # the loss is not part of the timed layers
MFU_RUNS = [  # the default first, so it is measured even when time runs short
    ("auto", "auto"), ("sdpa", "torch"), ("sdpa", "compile"), ("flash", "liger"), ("flash", "torch"),
    ("sdpa", "liger"), ("flash", "te"),
]


def mfu_rows(args, deadline: Deadline, peak_sheet: float | None, peak_measured: float) -> list[dict]:
    rows, seen = [], set()
    for attention_backend, kernel_backend in MFU_RUNS:
        row = {"attention_requested": attention_backend, "kernels_requested": kernel_backend}
        options = TransformerOptions(attention_backend=attention_backend, kernel_backend=kernel_backend)
        try:  # an explicitly requested backend that is missing is an error: report it, try the next
            names = select_kernels(options.kernel_config, args.device).names
        except KernelUnavailableError as e:
            rows.append(dict(row, status=f"unavailable: {e}"))
            continue
        # auto may choose what an explicit row asks for: time each distinct choice once.
        chosen = tuple((op, names[op]) for op in LAYER_OPS)
        if chosen in seen:
            row["status"] = "same kernels as a row above (auto chose them)"
        elif deadline.left() < 45:
            row["status"] = "skipped: time limit"
        elif "compile" in dict(chosen).values() and torch.device(args.device).type != "cuda":
            row["status"] = "n/a on a CPU dry run (compile time)"
        else:
            seen.add(chosen)
            try:
                r = time_layers(options, args)
                row.update(r, status="ok", of_measured_gemm_peak=r["tflops"] / peak_measured,
                           mfu=r["tflops"] / peak_sheet if peak_sheet else None)
            except Exception as e:  # e.g. out of memory with one backend: report it, try the next
                row["status"] = f"error: {type(e).__name__}: {str(e).splitlines()[0][:80]}"
        rows.append(row)
    return rows


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        print("gpu_check: no CUDA device; nothing to check (--device cpu runs a dry run)", file=sys.stderr)
        return 2
    deadline = Deadline(args.time_limit)
    name = torch.cuda.get_device_name() if args.device == "cuda" else "cpu (dry run)"
    peak_sheet = peak_tflops_for_device(name, bf16=True)
    print(f"device: {name}; torch {torch.__version__}; datasheet bf16 peak "
          f"{peak_sheet if peak_sheet else 'unknown'} TFLOP/s")
    torch.backends.cuda.matmul.allow_tf32 = False  # fp32 comparisons use true fp32 matmuls

    kernels = kernel_rows(deadline, args.device)
    print(f"\n{'op':22} {'backend':8} {'dtype':9} {'fwd rel err':>12} {'bwd rel err':>12}  status")
    for r in kernels:
        fwd = f"{r['forward']:.2e}" if "forward" in r else "-"
        bwd = f"{r['backward']:.2e}" if "backward" in r else "-"
        print(f"{r['op']:22} {r['backend']:8} {r['dtype']:9} {fwd:>12} {bwd:>12}  {r['status']}")

    peak_measured = gemm_peak_tflops(args.device, n=8192 if args.device == "cuda" else 512)
    print(f"\nmeasured bf16 GEMM peak: {peak_measured:.3g} TFLOP/s")
    mfu = mfu_rows(args, deadline, peak_sheet, peak_measured)
    print(f"{args.layers} × {args.model} decoder layers, micro-batch {args.micro_batch_size} "
          f"× seq {args.seq_length}, bf16, fwd+bwd")
    print(f"{'attention':9} {'kernels':8} {'step ms':>8} {'TFLOP/s':>8} {'MFU':>6} {'of GEMM':>8} {'mem GB':>7}  chosen / status")
    for r in mfu:
        prefix = f"{r['attention_requested']:9} {r['kernels_requested']:8}"
        if "tflops" in r:
            mfu_text = f"{r['mfu']:.1%}" if r["mfu"] is not None else "-"
            chosen = ",".join(f"{k}={v}" for k, v in r["kernels"].items())
            print(f"{prefix} {r['step_ms']:8.1f} {r['tflops']:8.1f} {mfu_text:>6} {r['of_measured_gemm_peak']:8.1%}"
                  f" {r['max_memory_gb']:7.1f}  {chosen}; {r['status']}")
        else:
            print(f"{prefix} {'':>8} {'':>8} {'':>6} {'':>8} {'':>7}  {r['status']}")
    failed = [r for r in kernels if r["status"].startswith("FAIL")]
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"device": name, "kernels": kernels, "gemm_peak_tflops": peak_measured, "mfu": mfu}, f,
                      indent=2, default=str)
    print(f"\n{len(failed)} kernel path(s) outside tolerance; {deadline.left():.0f} s of the time limit left")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
