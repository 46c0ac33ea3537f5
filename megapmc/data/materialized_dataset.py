"""Reading materialised blended shards (written by ``megapmc.data.materialize``).

A build leaves shards ``OUT_00000``, ``OUT_00001``, ... (Megatron ``.bin``/``.idx`` holding one sequence of
``seq_length + 1`` tokens per sample, and ``.sources.npy`` naming each sample's source) and the manifest
``OUT.manifest.json``. :class:`MaterializedDataset` reads the shards back as a dataset that yields exactly the
samples of the live blend in the same order (``--data-path OUT`` or ``--data-path OUT.manifest.json``);
:func:`verify_shards` checks every file against the manifest's SHA-256. The blended-dataset builder opens a
manifest through :func:`open_materialized`, so it never imports the writer.
"""
from __future__ import annotations

import hashlib
import json
import os
from typing import Optional

import numpy as np
from tqdm import tqdm

from megapmc.data.data_plan import DataPlan, SourcePlan
from megapmc.data.gpt_dataset import TokenSampleDataset
from megapmc.data.index_cache import load_mapped
from megapmc.data.indexed_dataset import IndexedDataset

MANIFEST_FORMAT = "megapmc-blended-shards"
MANIFEST_VERSION = 1
SHARD_FILES = ("bin", "idx", "sources")


def shard_prefix(output_prefix: str, i: int) -> str:
    return f"{output_prefix}_{i:05d}"


def shard_paths(prefix: str) -> dict[str, str]:
    return {"bin": f"{prefix}.bin", "idx": f"{prefix}.idx", "sources": f"{prefix}.sources.npy"}


def file_sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 24), b""):
            digest.update(block)
    return digest.hexdigest()


def expand_batch_counts(runs: list[list]) -> np.ndarray:
    """``[batches, K]`` per-source counts of every global batch from the manifest's run-length form."""
    if not runs:
        return np.zeros((0, 0), dtype=np.int64)
    return np.concatenate([np.tile(np.asarray(row, dtype=np.int64), (n, 1)) for row, n in runs])


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
        paths = shard_paths(os.path.join(base, entry["prefix"]))
        for kind in SHARD_FILES:
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
            self._sources.append(load_mapped(shard_paths(prefix)["sources"]))

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
