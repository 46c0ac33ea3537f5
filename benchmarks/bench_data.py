"""The data pipeline's benchmark table (issues 2 and 9), every row beside a baseline measured in the same run.

* preprocessing tokens/s with 1 and 2 workers against the raw tokenizer (``bench_preprocess.py``'s rows);
* index building for 100M samples: the C++ sample, shuffle and blending indices (the shuffle against a numpy
  shuffle of the same size, which is what Megatron's Python side uses for its shuffle index);
* loader samples/s: the blended dataset's batched C++ gather through the DataLoader against a per-sample
  numpy concatenation in the style of Megatron's ``GPTDataset.__getitem__``;
* materialisation: MB/s of blended shards written (with checksums) against plain large writes of the same
  bytes to the same disk.

    python benchmarks/bench_data.py [--samples 100000000] [--skip-preprocess] [--json]
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))


def _best(fn, repeats: int = 3) -> tuple[float, float]:
    """Best wall-clock seconds and best CPU seconds of this process over ``repeats`` runs.

    The machine is shared, so wall time includes the neighbours' load; CPU time (single-threaded work)
    is what the code itself costs, and the ratios below use it.
    """
    walls, cpus = [], []
    for _ in range(repeats):
        c0, t0 = time.process_time(), time.perf_counter()
        fn()
        walls.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
    return min(walls), min(cpus)


def _row(benchmark: str, setting: str, unit: str, work: float, measured, baseline=None, rate: bool = False) -> dict:
    """A table row; with ``rate`` the values are ``work`` per second, else seconds."""
    def value(seconds):
        return work / seconds if rate else seconds
    wall, cpu = measured
    row = {"benchmark": benchmark, "setting": setting, "unit": unit, "wall": value(wall), "cpu": value(cpu),
           "baseline_cpu": None, "ratio": None}
    if baseline is not None:
        row["baseline_cpu"] = value(baseline[1])
        row["ratio"] = baseline[1] / cpu  # > 1: faster than the baseline
    return row


def index_rows(num_samples: int, seq_length: int = 128, repeats: int = 2) -> list[dict]:
    """Build the three indices for ``num_samples`` samples (synthetic document sizes, mean 1000 tokens)."""
    from megapmc import _C

    rng = np.random.default_rng(0)
    num_docs = int(num_samples * seq_length / 1000 * 1.01) + 2  # 1% spare over the mean of 1000 tokens
    sizes = rng.integers(1, 2000, size=num_docs, dtype=np.int32)
    doc_idx = _C.build_document_index(np.arange(num_docs, dtype=np.int32), 1, 1)
    rows = []
    docs = np.arange(num_docs, dtype=np.int32)
    m = f"{num_samples / 1e6:.0f}M"
    rows.append(_row("index", f"document index, {num_docs / 1e6:.1f}M documents (C++)", "s", 1,
                     _best(lambda: _C.build_document_index(docs, 1, 1), repeats)))
    rows.append(_row("index", f"sample index, {m} samples of {seq_length} (C++)", "s", 1,
                     _best(lambda: _C.build_sample_index(sizes, doc_idx, seq_length, num_samples), repeats)))
    boundaries = np.array([0, num_samples], dtype=np.int64)
    rows.append(_row("index", f"shuffle index, {m} (C++ vs numpy shuffle)", "s", 1,
                     _best(lambda: _C.build_shuffle_index(boundaries, 1), repeats),
                     _best(lambda: np.random.default_rng(1).shuffle(np.arange(num_samples, dtype=np.uint32)), 1)))
    for weights, gbs, mbs in (([15, 4, 1], 3200, 4), ([7, 3, 2], 1000, 8)):
        ratio = ":".join(map(str, weights))
        rows.append(_row("index", f"blending index, {m}, {ratio} gbs {gbs} (target < 2 s)", "s", 1,
                         _best(lambda: _C.build_blending_indices(np.asarray(weights), gbs, mbs, num_samples), repeats)))
    return rows


def _make_sources(directory: Path, tokens_per_source: int) -> list[str]:
    from megapmc.data.indexed_dataset import IndexedDatasetBuilder

    rng = np.random.default_rng(0)
    prefixes = []
    for k, name in enumerate(("books", "papers", "general")):
        lengths = np.clip(rng.lognormal(7.0, 0.8, size=tokens_per_source // 800), 16, 30000).astype(np.int64)
        lengths = lengths[np.cumsum(lengths) <= tokens_per_source]
        tokens = rng.integers(3, 32000, size=int(lengths.sum()), dtype=np.uint16)
        prefix = str(directory / f"{name}_text_document")
        builder = IndexedDatasetBuilder(prefix, dtype=np.uint16)
        builder.add_documents(tokens, lengths)
        builder.finalize()
        prefixes.append(prefix)
    return prefixes


def _megatron_style_getitem(ds, i: int) -> np.ndarray:
    """One sample by slicing and concatenating documents in numpy, as Megatron's GPTDataset does."""
    j = int(ds.shuffle_index[i])
    (p0, o0), (p1, o1) = ds.sample_index[j], ds.sample_index[j + 1]
    if p0 == p1:
        return ds.indexed.get(int(ds.document_index[p0]), int(o0), int(o1 - o0 + 1)).astype(np.int64)
    parts = [ds.indexed.get(int(ds.document_index[p0]), int(o0))]
    parts += [ds.indexed.get(int(ds.document_index[p])) for p in range(p0 + 1, p1)]
    parts.append(ds.indexed.get(int(ds.document_index[p1]), 0, int(o1 + 1)))
    return np.concatenate(parts).astype(np.int64)


class _PerSampleDataset:
    """The baseline: one sample per ``__getitem__``, sliced and concatenated in numpy (Megatron's way)."""

    def __init__(self, blend):
        self.blend = blend

    def __len__(self) -> int:
        return len(self.blend)

    def __getitem__(self, i: int):
        import torch

        k, j = int(self.blend.dataset_index[i]), int(self.blend.dataset_sample_index[i])
        return {"tokens": torch.from_numpy(_megatron_style_getitem(self.blend.datasets[k], j))}


def loader_and_materialize_rows(work: Path, tokens_per_source: int, seq_length: int = 2048) -> list[dict]:
    import torch

    from megapmc.data.blended_dataset import build_pretraining_datasets
    from megapmc.data.config import DataConfig
    from megapmc.data.loader import build_pretraining_data_loader
    from megapmc.data.materialize import build_blended_shards
    from megapmc.data.sampler import PretrainingSampler
    from megapmc.parallel.state import ParallelState

    torch.set_num_threads(1)
    prefixes = _make_sources(work / "data", tokens_per_source)
    gbs, mbs = 64, 4
    config = DataConfig(["15", prefixes[0], "4", prefixes[1], "1", prefixes[2]], split="1", micro_batch_size=mbs,
                        cache_dir=str(work / "cache"))
    train, _, _, _ = build_pretraining_datasets(config, seq_length, gbs, None, 1, 1234, ParallelState.single(),
                                                verbose=False)
    n = min(len(train), 8192) // gbs * gbs
    train.get_tokens(np.arange(n))  # warm the page cache for both sides
    baseline_ds = _PerSampleDataset(train)
    rows = []
    for workers in (0, 2):
        def run(make_loader):
            it = iter(make_loader())
            next(it)  # worker start-up is not steady-state throughput
            c0, t0 = time.process_time(), time.perf_counter()
            for _ in it:
                pass
            return time.perf_counter() - t0, time.process_time() - c0

        def ours():
            return build_pretraining_data_loader(train, len(train) - n, mbs, gbs, ParallelState.single(), workers)

        def megatron_style():
            sampler = PretrainingSampler(len(train), len(train) - n, mbs, 0, 1)
            return torch.utils.data.DataLoader(baseline_ds, batch_sampler=sampler, num_workers=workers)

        runs = [(run(ours), run(megatron_style)) for _ in range(3)]  # interleaved: both see the same load
        mine = (min(r[0][0] for r in runs), min(r[0][1] for r in runs))
        base = (min(r[1][0] for r in runs), min(r[1][1] for r in runs))
        done = n - mbs
        if workers:  # the workers' CPU time is not this process's: compare wall-clock, measured back to back
            rows.append(_row("loader", f"DataLoader mbs {mbs}, seq {seq_length}, {workers} workers (wall; vs "
                             f"per-sample numpy)", "samples/s", done, (mine[0], mine[0]), (base[0], base[0]), rate=True))
        else:
            rows.append(_row("loader", f"DataLoader mbs {mbs}, seq {seq_length}, in-process (vs per-sample numpy)",
                             "samples/s", done, mine, base, rate=True))
    out = work / "shards"
    nbytes = len(train) * (seq_length + 1) * 2
    materialize = _best(lambda: build_blended_shards(train, str(out / "blend"), 1 << 28, {"bench": True},
                                                     progress=False, chunk_samples=512) and shutil.rmtree(out), 2)
    block = np.random.default_rng(0).integers(0, 255, size=1 << 24, dtype=np.uint8).tobytes()
    blocks = max(1, nbytes // len(block))

    def plain_write():
        with open(work / "plain.bin", "wb") as f:
            for _ in range(blocks):
                f.write(block)
    plain = _best(plain_write, 2)
    scale = nbytes / (blocks * len(block))  # the plain write's time for the same number of bytes
    rows.append(_row("materialize", f"blended shards, {nbytes / 1e6:.0f} MB with SHA-256 (vs plain writes; "
                     f"target >= 200 MB/s)", "MB/s", nbytes / 1e6, materialize,
                     (plain[0] * scale, plain[1] * scale), rate=True))
    return rows


def format_rows(rows: list[dict]) -> str:
    lines = [f"{'benchmark':<12}{'setting':<70}{'wall':>14}{'per CPU':>14}  {'unit':<11}{'baseline':>14}{'ratio':>7}"]
    for r in rows:
        base = f"{r['baseline_cpu']:>14,.2f}" if r.get("baseline_cpu") is not None else f"{'':>14}"
        ratio = f"{r['ratio']:>7.2f}" if r.get("ratio") is not None else f"{'':>7}"
        lines.append(f"{r['benchmark']:<12}{r['setting']:<70}{r['wall']:>14,.3f}{r['cpu']:>14,.3f}  {r['unit']:<11}"
                     f"{base}{ratio}")
    lines.append("wall: wall-clock on this (shared) machine; per CPU: the same per second of this process's CPU time; "
                 "baseline and ratio (> 1 = faster) use CPU time")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--samples", type=int, default=100_000_000, help="samples for the index-building rows")
    p.add_argument("--tokens-per-source", type=int, default=20_000_000, help="synthetic shard size for the loader")
    p.add_argument("--skip-preprocess", action="store_true")
    p.add_argument("--preprocess-copies", type=int, default=100)
    p.add_argument("--json", action="store_true")
    p.add_argument("--work-dir", help="where the synthetic shards go (default a temporary directory)")
    args = p.parse_args()
    rows = []
    if not args.skip_preprocess:
        from bench_preprocess import bench_preprocess_rows

        for r in bench_preprocess_rows(copies=args.preprocess_copies):
            raw = r["vs_raw"] == 1.0
            rows.append({"benchmark": "preprocess", "setting": r["setting"], "unit": "tokens/s",
                         "wall": r["tokens_per_s"], "cpu": r["tokens_per_cpu_s"],
                         "baseline_cpu": None if raw else r["tokens_per_cpu_s"] / r["cpu_vs_raw"],
                         "ratio": None if raw else r["cpu_vs_raw"]})
    rows += index_rows(args.samples)
    work = Path(args.work_dir or tempfile.mkdtemp(prefix="bench_data_"))
    try:
        rows += loader_and_materialize_rows(work, args.tokens_per_source)
    finally:
        if not args.work_dir:
            shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(rows, indent=1) if args.json else format_rows(rows))


if __name__ == "__main__":
    main()
