"""Materialised blended shards: a run's exact training stream written once as Megatron ``.bin``/``.idx``.

:func:`build_blended_shards` walks the training blend (the same :class:`BlendedDataset` the trainer reads,
in the order the sampler reads it) and writes every sample of ``seq_length + 1`` tokens, one sequence per
sample, through the C++ builder into shards ``OUT_00000``, ``OUT_00001``, ... that each hold whole global
batches. Beside each shard, ``OUT_00000.sources.npy`` (uint8) names every sample's source. The manifest
``OUT.manifest.json`` holds the settings, the data plan, per-source samples and tokens, the per-source
counts of every global batch (run-length encoded) and per shard, and a SHA-256 per file.

The build streams (one chunk of samples in memory), writes each shard under temporary names and renames
it when complete, and records it in the manifest; an interrupted build resumes after the last complete
shard. :class:`MaterializedDataset` reads the shards back as a dataset that yields exactly the samples of
the live blend in the same order (``--data-path OUT`` or ``--data-path OUT.manifest.json``).
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
from megapmc.data.data_plan import DataPlan, SourcePlan
from megapmc.data.gpt_dataset import TokenSampleDataset
from megapmc.data.index_cache import load_mapped
from megapmc.data.indexed_dataset import IndexedDataset, IndexedDatasetBuilder

MANIFEST_FORMAT = "megapmc-blended-shards"
MANIFEST_VERSION = 1
_SHARD_FILES = ("bin", "idx", "sources")


def shard_prefix(output_prefix: str, i: int) -> str:
    return f"{output_prefix}_{i:05d}"


def _shard_paths(prefix: str) -> dict[str, str]:
    return {"bin": f"{prefix}.bin", "idx": f"{prefix}.idx", "sources": f"{prefix}.sources.npy"}


def file_sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 24), b""):
            digest.update(block)
    return digest.hexdigest()


def _write_json(path: str, obj: dict) -> None:
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=1)
    os.replace(tmp, path)


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


def expand_batch_counts(runs: list[list]) -> np.ndarray:
    """``[batches, K]`` per-source counts of every global batch from the manifest's run-length form."""
    if not runs:
        return np.zeros((0, 0), dtype=np.int64)
    return np.concatenate([np.tile(np.asarray(row, dtype=np.int64), (n, 1)) for row, n in runs])


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
        _write_json(manifest_path, manifest)
    bar.close()
    per_source = np.zeros(len(names), dtype=np.int64)
    for entry in manifest["shards"]:
        per_source += np.asarray(entry["source_samples"], dtype=np.int64)
    manifest["source_samples"] = {n: int(c) for n, c in zip(names, per_source)}
    manifest["source_tokens"] = {n: int(c) * seq for n, c in zip(names, per_source)}  # trained on: samples x seq
    manifest["complete"] = True
    _write_json(manifest_path, manifest)
    return manifest_path


def _complete_prefix(previous: dict, output_prefix: str, sample_bytes: int) -> tuple[list, list]:
    """The shards of an interrupted build that are whole on disk, and their batch counts."""
    kept = []
    for i, entry in enumerate(previous.get("shards", [])):
        paths = _shard_paths(shard_prefix(output_prefix, i))
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
    paths = _shard_paths(prefix)
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
        tmp = f"{paths['sources']}.tmp-{os.getpid()}"
        with open(tmp, "wb") as f:
            np.save(f, sources)
        builder.finalize()
    os.replace(tmp, paths["sources"])
    gbs = dataset.global_batch_size
    entry = {
        "prefix": os.path.basename(prefix), "first_sample": first, "num_samples": last - first,
        "num_batches": -(-(last - first) // gbs),
        "source_samples": np.bincount(sources, minlength=len(dataset.names)).tolist(),
        "sha256": {"bin": bin_digest.hexdigest(), "idx": file_sha256(paths["idx"]),
                   "sources": file_sha256(paths["sources"])},
    }
    return entry, sources


def load_manifest(manifest_path: str) -> dict:
    if not os.path.isfile(manifest_path):
        raise FileNotFoundError(f"manifest {manifest_path} does not exist")
    with open(manifest_path) as f:
        try:
            manifest = json.load(f)
        except json.JSONDecodeError as e:
            raise ValueError(f"{manifest_path} is not valid JSON ({e}); rebuild it with tools/build_blended_shards.py")
    if manifest.get("format") != MANIFEST_FORMAT or manifest.get("version") != MANIFEST_VERSION:
        raise ValueError(f"{manifest_path} is not a megapmc blended-shards manifest (version {MANIFEST_VERSION})")
    if not manifest.get("complete"):
        raise ValueError(f"{manifest_path} describes an unfinished build ({len(manifest['shards'])} shards done); "
                         f"re-run tools/build_blended_shards.py with the same flags to finish it")
    return manifest


def verify_shards(manifest_path: str, progress: bool = False) -> list[str]:
    """Problems found checking every shard file against the manifest's SHA-256 (empty when all match)."""
    manifest = load_manifest(manifest_path)
    base = os.path.dirname(manifest_path)
    problems = []
    for entry in tqdm(manifest["shards"], desc="verify", disable=not progress):
        paths = _shard_paths(os.path.join(base, entry["prefix"]))
        for kind in _SHARD_FILES:
            if not os.path.isfile(paths[kind]):
                problems.append(f"{paths[kind]}: missing")
            elif file_sha256(paths[kind]) != entry["sha256"][kind]:
                problems.append(f"{paths[kind]}: SHA-256 differs from the manifest (corrupted or replaced)")
    return problems


class MaterializedDataset(TokenSampleDataset):
    """The shards of a materialised stream as one dataset: sample ``i`` is sequence ``i`` in shard order.

    Args:
        manifest_path: ``OUT.manifest.json``.
        num_samples: use only the first ``num_samples`` (default all).
    """

    def __init__(self, manifest_path: str, num_samples: Optional[int] = None):
        self.manifest_path = manifest_path
        self.manifest = load_manifest(manifest_path)
        m = self.manifest
        self.seq_length, self.global_batch_size = m["seq_length"], m["global_batch_size"]
        self.micro_batch_size, self.names = m["micro_batch_size"], m["sources"]
        total = m["num_samples"]
        if num_samples is not None and not 0 <= num_samples <= total:
            raise ValueError(f"{manifest_path} holds {total} samples; {num_samples} were asked for (build the shards "
                             f"for the longer run)")
        self.num_samples = total if num_samples is None else int(num_samples)
        self.starts = np.asarray([e["first_sample"] for e in m["shards"]] + [total], dtype=np.int64)
        self._open()

    def _open(self) -> None:
        base = os.path.dirname(self.manifest_path)
        self._shards, self._sources = [], []
        width = self.seq_length + 1
        for entry in self.manifest["shards"]:
            prefix = os.path.join(base, entry["prefix"])
            ds = IndexedDataset(prefix)
            n = entry["num_samples"]
            if len(ds) != n or ds.num_tokens != n * width:
                raise ValueError(f"shard {prefix} holds {len(ds)} sequences / {ds.num_tokens} tokens, the manifest "
                                 f"says {n} samples of {width} tokens; run tools/inspect_shards.py --verify")
            self._shards.append(ds.tokens.reshape(n, width))  # [n, s+1] view of the mapped .bin
            self._sources.append(load_mapped(_shard_paths(prefix)["sources"]))

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state.pop("_shards")
        state.pop("_sources")
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._open()

    def __len__(self) -> int:
        return self.num_samples

    def _locate(self, indices) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        if idx.size and (idx.min() < 0 or idx.max() >= self.num_samples):
            bad = idx[(idx < 0) | (idx >= self.num_samples)][0]
            raise IndexError(f"sample {bad} out of range for {self.manifest_path} with {self.num_samples} samples")
        shard = np.searchsorted(self.starts, idx, side="right") - 1
        return idx, shard, idx - self.starts[shard]

    def get_tokens(self, indices, dtype=np.int64) -> np.ndarray:
        idx, shard, local = self._locate(indices)
        out = np.empty((idx.size, self.seq_length + 1), dtype=dtype)  # [n, s+1]
        for s in np.unique(shard):
            mask = shard == s
            out[mask] = self._shards[s][local[mask]]
        return out

    def sources_of(self, indices) -> np.ndarray:
        idx, shard, local = self._locate(indices)
        out = np.empty(idx.size, dtype=np.uint8)
        for s in np.unique(shard):
            mask = shard == s
            out[mask] = self._sources[s][local[mask]]
        return out


def plan_from_manifest(manifest: dict) -> Optional[DataPlan]:
    p = manifest.get("plan")
    if p is None:
        return None
    return DataPlan(**{**p, "sources": [SourcePlan(**s) for s in p["sources"]]})


def open_materialized(manifest_path: str, seq_length: Optional[int], global_batch_size: int,
                      train_samples: Optional[int], train_epochs: Optional[float], seed: Optional[int],
                      verbose: bool = True):
    """``(train, None, None, plan)`` from a materialised stream, after checking it matches the run's settings."""
    manifest = load_manifest(manifest_path)
    settings = manifest["settings"]
    checks = [("--seq-length", seq_length, manifest["seq_length"]),
              ("--global-batch-size", global_batch_size, manifest["global_batch_size"]),
              ("--seed", seed, settings.get("seed")),
              ("--train-epochs", train_epochs, settings.get("train_epochs"))]
    for flag, wanted, built in checks:
        if wanted is not None and built is not None and wanted != built:
            raise ValueError(f"{manifest_path} was built with {flag} {built}, the run asks for {wanted}; rebuild "
                             f"the shards with tools/build_blended_shards.py or match the flag")
    train = MaterializedDataset(manifest_path, num_samples=train_samples)
    plan = plan_from_manifest(manifest)
    if verbose and plan is not None:
        print(f"materialised stream {manifest_path}\n{plan.table()}", flush=True)
    return train, None, None, plan
