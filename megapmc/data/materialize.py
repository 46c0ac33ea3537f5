"""Materialised blended shards: a run's exact training stream written once as Megatron ``.bin``/``.idx``.

:func:`build_blended_shards` walks the training blend (the same :class:`BlendedDataset` the trainer reads,
in the order the sampler reads it) and writes every sample of ``seq_length + 1`` tokens, one sequence per
sample, through the C++ builder into shards ``OUT_00000``, ``OUT_00001``, ... that each hold whole global
batches. Beside each shard, ``OUT_00000.sources.npy`` (uint8) names every sample's source. The manifest
``OUT.manifest.json`` holds the settings, the data plan, per-source samples and tokens, the per-source
counts of every global batch (run-length encoded) and per shard, and a SHA-256 per file.

The build streams (one chunk of samples in memory), writes each shard under temporary names and renames
it when complete, and records it in the manifest; an interrupted build resumes after the last complete
shard. Reading them back is ``megapmc.data.materialized_dataset``'s job.
"""
from __future__ import annotations

import hashlib
import json
import os
from typing import Optional

import numpy as np
from tqdm import tqdm

from megapmc.data.blended_dataset import BlendedDataset
from megapmc.data.config import MANIFEST_SUFFIX
from megapmc.data.data_plan import DataPlan
from megapmc.data.indexed_dataset import IndexedDatasetBuilder
from megapmc.data.materialized_dataset import (MANIFEST_FORMAT, MANIFEST_VERSION, expand_batch_counts, file_sha256,
                                               shard_paths, shard_prefix)
from megapmc.utils.io import atomic_open, write_json_atomic


def _run_length(counts: np.ndarray) -> list[list]:
    """``[[counts_row, repeats], ...]`` for consecutive equal rows of ``[batches, K]``."""
    runs: list[list] = []
    for row in counts.tolist():
        if runs and runs[-1][0] == row:
            runs[-1][1] += 1
        else:
            runs.append([row, 1])
    return runs


def _merge_runs(runs: list[list], more: list[list]) -> list[list]:
    if runs and more and runs[-1][0] == more[0][0]:
        runs[-1][1] += more[0][1]
        more = more[1:]
    return runs + more


def build_blended_shards(dataset: BlendedDataset, output_prefix: str, shard_size_bytes: int, settings: dict,
                         plan: Optional[DataPlan] = None, chunk_samples: int = 512, progress: bool = True) -> str:
    """Write ``dataset`` (the training blend) as shards; return the manifest path.

    ``settings`` (the flags that define the blend) go into the manifest; a re-run with the same settings
    resumes an interrupted build, with different settings it refuses to touch the existing output.
    """
    gbs, seq = dataset.global_batch_size, dataset.seq_length
    dtypes = {np.dtype(ds.indexed.dtype) for ds in dataset.datasets}
    dtype = np.result_type(*dtypes)
    sample_bytes = (seq + 1) * dtype.itemsize
    batches_per_shard = max(1, int(shard_size_bytes) // (gbs * sample_bytes))
    shard_samples = batches_per_shard * gbs
    num_samples = len(dataset)
    num_shards = -(-num_samples // shard_samples)
    names = list(dataset.names)
    manifest_path = output_prefix + MANIFEST_SUFFIX
    manifest = {
        "format": MANIFEST_FORMAT, "version": MANIFEST_VERSION, "complete": False,
        "settings": settings, "dtype": dtype.name, "seq_length": seq, "global_batch_size": gbs,
        "micro_batch_size": dataset.micro_batch_size, "num_samples": num_samples, "sources": names,
        "shard_samples": shard_samples, "plan": plan.to_dict() if plan is not None else None,
        "batch_counts": [], "shards": [],
    }
    # Compared as JSON sees them, since the previous manifest was read back from JSON.
    identity = json.loads(json.dumps({k: manifest[k] for k in ("settings", "dtype", "seq_length", "global_batch_size",
                                                               "micro_batch_size", "num_samples", "sources",
                                                               "shard_samples")}))
    if os.path.isfile(manifest_path):
        with open(manifest_path) as f:
            previous = json.load(f)
        if {k: previous.get(k) for k in identity} != identity:
            raise ValueError(f"{manifest_path} exists with other settings; choose another --output-prefix or "
                             f"delete the old shards ({output_prefix}_*)")
        manifest["shards"], manifest["batch_counts"] = _complete_prefix(previous, output_prefix, sample_bytes)
    if os.path.dirname(output_prefix):
        os.makedirs(os.path.dirname(output_prefix), exist_ok=True)
    start_shard = len(manifest["shards"])
    bar = tqdm(total=num_samples * sample_bytes, initial=start_shard * shard_samples * sample_bytes, unit="B",
               unit_scale=True, desc="blended shards", disable=not progress)
    for i in range(start_shard, num_shards):
        first, last = i * shard_samples, min((i + 1) * shard_samples, num_samples)
        entry, sources = _write_shard(dataset, shard_prefix(output_prefix, i), first, last, dtype, chunk_samples, bar)
        batches = np.split(sources, range(gbs, len(sources), gbs))  # the last may be partial
        counts = np.stack([np.bincount(b, minlength=len(names)) for b in batches])
        manifest["batch_counts"] = _merge_runs(manifest["batch_counts"], _run_length(counts))
        manifest["shards"].append(entry)
        write_json_atomic(manifest_path, manifest, indent=1)
    bar.close()
    per_source = np.zeros(len(names), dtype=np.int64)
    for entry in manifest["shards"]:
        per_source += np.asarray(entry["source_samples"], dtype=np.int64)
    manifest["source_samples"] = {n: int(c) for n, c in zip(names, per_source)}
    manifest["source_tokens"] = {n: int(c) * seq for n, c in zip(names, per_source)}  # trained on: samples x seq
    manifest["complete"] = True
    write_json_atomic(manifest_path, manifest, indent=1)
    return manifest_path


def _complete_prefix(previous: dict, output_prefix: str, sample_bytes: int) -> tuple[list, list]:
    """The shards of an interrupted build that are whole on disk, and their batch counts."""
    kept = []
    for i, entry in enumerate(previous.get("shards", [])):
        paths = shard_paths(shard_prefix(output_prefix, i))
        if not all(os.path.isfile(p) for p in paths.values()):
            break
        if os.path.getsize(paths["bin"]) != entry["num_samples"] * sample_bytes:
            break
        kept.append(entry)
    n_batches = sum(e["num_batches"] for e in kept)
    counts = expand_batch_counts(previous.get("batch_counts", []))[:n_batches]
    return kept, _run_length(counts)


def _write_shard(dataset: BlendedDataset, prefix: str, first: int, last: int, dtype: np.dtype, chunk: int,
                 bar: tqdm) -> tuple[dict, np.ndarray]:
    paths = shard_paths(prefix)
    seq = dataset.seq_length
    bin_digest = hashlib.sha256()
    sources = np.asarray(dataset.sources_of(np.arange(first, last)), dtype=np.uint8)
    with IndexedDatasetBuilder(prefix, dtype=dtype) as builder:
        for start in range(first, last, chunk):
            end = min(start + chunk, last)
            tokens = dataset.get_tokens(np.arange(start, end), dtype=dtype)  # [n, s+1]
            builder.add_documents(tokens.reshape(-1), np.full(end - start, seq + 1, dtype=np.int64))
            bin_digest.update(memoryview(tokens).cast("B"))
            bar.update(tokens.nbytes)
        builder.finalize()
    with atomic_open(paths["sources"], "wb") as f:
        np.save(f, sources)
    gbs = dataset.global_batch_size
    entry = {
        "prefix": os.path.basename(prefix), "first_sample": first, "num_samples": last - first,
        "num_batches": -(-(last - first) // gbs),
        "source_samples": np.bincount(sources, minlength=len(dataset.names)).tolist(),
        "sha256": {"bin": bin_digest.hexdigest(), "idx": file_sha256(paths["idx"]),
                   "sources": file_sha256(paths["sources"])},
    }
    return entry, sources


