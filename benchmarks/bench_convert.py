#!/usr/bin/env python
"""Peak resident memory of checkpoint conversion against the size of what is converted.

Writes a random LLaMA checkpoint in Hugging Face format (default: TinyLlama-1.1B's shape, bf16, 1 GB
shards), then converts it in fresh subprocesses and reads each child's peak RSS (``VmHWM``):

  baseline   python importing megapmc.convert and creating one tensor (interpreter + torch)
  hf->megapmc  TP=2, bf16                 megapmc->hf  back, bf16, 1 GB shards
  naive      every tensor of every shard copied into memory (what a non-streaming converter holds)

The target (issue 5) is a peak under 1.5 × (largest source shard + one layer of output).

  python benchmarks/bench_convert.py --work-dir /tmp/bench_convert [--keep]
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import torch

from megapmc.convert.hf import HFSaver
from megapmc.convert.name_map import conversion_units, unit_params
from megapmc.convert.sharding import full_shapes
from megapmc.model.config import LlamaConfig

ONE_B = LlamaConfig(num_layers=22, hidden_size=2048, num_attention_heads=32, num_key_value_heads=4,
                    ffn_hidden_size=5632, vocab_size=32000)
GIB = 2**30


def write_random_hf(path: Path, config: LlamaConfig, dtype: torch.dtype, shard_bytes: int) -> None:
    saver = HFSaver(path, config, dtype, shard_bytes)
    g = torch.Generator().manual_seed(0)
    for unit in conversion_units(config.num_layers):
        tensors = {name: torch.randn(shape, generator=g).mul_(0.02).to(dtype)
                   for spec in unit_params(unit) for name, shape in zip(spec.hf, full_shapes(spec, config))}
        saver.write_unit(unit, tensors)
    saver.finish()


def peak_rss_of(code: str) -> tuple[float, float]:
    """(peak RSS in GiB, seconds) of a fresh Python running ``code``."""
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if proc.returncode:
        raise RuntimeError(f"benchmark step failed:\n{proc.stderr[-3000:]}")
    seconds = time.perf_counter() - start
    return float(proc.stdout.strip().splitlines()[-1]) / GIB, seconds


# VmHWM, not ru_maxrss: Linux carries ru_maxrss across fork+exec, so a child would report this process's peak.
_RSS = "print(int(open('/proc/self/status').read().split('VmHWM:')[1].split()[0]) * 1024)"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--work-dir", type=Path, default=Path("/tmp/bench_convert"))
    p.add_argument("--shard-gb", type=float, default=1.0)
    p.add_argument("--keep", action="store_true", help="keep the generated checkpoints")
    a = p.parse_args()
    if a.work_dir.exists():
        shutil.rmtree(a.work_dir)
    a.work_dir.mkdir(parents=True)
    src, tp2, back = a.work_dir / "hf", a.work_dir / "tp2", a.work_dir / "back"
    shard_bytes = int(a.shard_gb * 10**9)
    write_random_hf(src, ONE_B, torch.bfloat16, shard_bytes)

    files = sorted(src.glob("*.safetensors"))
    model_gib = sum(f.stat().st_size for f in files) / GIB
    largest_gib = max(f.stat().st_size for f in files) / GIB
    h, d, f = ONE_B.hidden_size, ONE_B.head_dim, ONE_B.ffn_hidden_size
    layer_params = h * (ONE_B.num_attention_heads + 2 * ONE_B.num_key_value_heads) * d + \
        ONE_B.num_attention_heads * d * h + 3 * h * f + 2 * h
    unit_gib = max(layer_params, ONE_B.vocab_size * h) * 2 / GIB  # bf16; the embedding is the largest unit
    target = 1.5 * (largest_gib + unit_gib)

    convert = ("from megapmc.convert import ConvertConfig, convert; "
               "convert(ConvertConfig({args}, progress=False)); " + _RSS)
    runs = {
        "baseline (import + one tensor)": "import torch, megapmc.convert; torch.ones(1); " + _RSS,
        "hf -> megapmc TP=2 bf16": convert.format(
            args=f"'hf', 'megapmc', {str(src)!r}, {str(tp2)!r}, target_tensor_parallel_size=2, dtype='bf16'"),
        "megapmc TP=2 -> hf bf16": convert.format(
            args=f"'megapmc', 'hf', {str(tp2)!r}, {str(back)!r}, dtype='bf16', max_shard_bytes={shard_bytes}"),
        "naive: whole model in memory": "from safetensors.torch import load_file; import glob; "
            f"sd = [{{k: v.clone() for k, v in load_file(p).items()}} "
            f"for p in sorted(glob.glob({str(src)!r} + '/*.safetensors'))]; " + _RSS,
    }
    results = {name: peak_rss_of(code) for name, code in runs.items()}
    print(f"model {ONE_B.num_parameters() / 1e9:.2f}B params, {model_gib:.2f} GiB bf16 in {len(files)} shards; "
          f"largest shard {largest_gib:.2f} GiB, largest unit {unit_gib:.2f} GiB; target < {target:.2f} GiB")
    base = results["baseline (import + one tensor)"][0]
    for name, (rss, seconds) in results.items():
        print(f"{name:34s} peak RSS {rss:6.2f} GiB  (above baseline {rss - base:5.2f} GiB)  {seconds:6.1f} s")
    (a.work_dir / "results.json").write_text(json.dumps(
        {"model_gib": model_gib, "largest_shard_gib": largest_gib, "largest_unit_gib": unit_gib, "target_gib": target,
         "peak_rss_gib": {k: v[0] for k, v in results.items()}, "seconds": {k: v[1] for k, v in results.items()}},
        indent=2))
    if not a.keep:
        for path in (src, tp2, back):
            shutil.rmtree(path, ignore_errors=True)


if __name__ == "__main__":
    main()
