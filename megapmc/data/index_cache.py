"""On-disk cache of dataset indices as ``.npy`` files, keyed by the settings AND the shard's fingerprint.

Megatron keys its index cache on the path string alone, so a shard rebuilt in place silently reuses
stale indices. Here the key is a hash of everything that defines the indices (kind, prefix, split,
seq_length, seed, number of samples, format version) plus a fingerprint of each shard (the sizes of
``.bin`` and ``.idx`` and a checksum of ``.idx``); a rebuilt shard therefore gets fresh indices.

In a distributed run rank 0 builds and writes the files (temporary name, then rename; the description
file is written last and marks the entry complete); every other rank waits on a barrier and maps them.
All ranks must call the same builds in the same order (the barrier is on the default group).
"""
from __future__ import annotations

import functools
import hashlib
import json
import os
from typing import Callable, Mapping, Optional

import numpy as np
import torch.distributed as dist

from megapmc.parallel.state import ParallelState
from megapmc.utils.io import atomic_open, write_json_atomic

# Bump when the index semantics change, so old caches are not reused.
INDEX_FORMAT_VERSION = 1


@functools.lru_cache(maxsize=256)
def _fingerprint(idx_path: str, idx_size: int, idx_mtime_ns: int, bin_size: int) -> str:
    digest = hashlib.blake2b(digest_size=16)
    with open(idx_path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            digest.update(block)
    return f"idx{idx_size}-bin{bin_size}-{digest.hexdigest()}"


def shard_fingerprint(prefix: str) -> str:
    """Sizes of ``prefix.bin``/``.idx`` and a checksum of ``.idx`` (memoised on size and mtime)."""
    idx_path, bin_path = f"{prefix}.idx", f"{prefix}.bin"
    for path in (idx_path, bin_path):
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{path} does not exist (data prefix {prefix!r})")
    st = os.stat(idx_path)
    return _fingerprint(os.path.abspath(idx_path), st.st_size, st.st_mtime_ns, os.path.getsize(bin_path))


def cache_key(description: Mapping) -> str:
    blob = json.dumps({"format_version": INDEX_FORMAT_VERSION, **description}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


def load_mapped(path: str) -> np.ndarray:
    """A read-only memory map of a ``.npy`` file as a plain ndarray (``np.memmap`` indexing is slow)."""
    return np.load(path, mmap_mode="r").view(np.ndarray)


def _save_npy(path: str, array: np.ndarray) -> None:
    with atomic_open(path, "wb") as f:
        np.save(f, np.ascontiguousarray(array))


class IndexCache:
    """Build-once, map-everywhere store of named index arrays.

    Args:
        cache_dir: directory for the ``.npy`` files (created by rank 0).
        parallel: which rank builds (rank 0) and whether to wait on a barrier.
    """

    def __init__(self, cache_dir: str, parallel: ParallelState):
        self.cache_dir = cache_dir
        self.parallel = parallel

    def paths(self, description: Mapping, names: list[str]) -> tuple[str, dict[str, str]]:
        key = cache_key(description)
        stem = os.path.join(self.cache_dir, f"{description.get('kind', 'index')}-{key}")
        return f"{stem}-description.json", {name: f"{stem}-{name}.npy" for name in names}

    def get_or_build(self, description: Mapping, build: Callable[[], dict[str, np.ndarray]],
                     names: list[str]) -> dict[str, np.ndarray]:
        """Memory-mapped arrays ``names`` for ``description``, built by ``build()`` on rank 0 if missing."""
        marker, paths = self.paths(description, names)
        error: Optional[BaseException] = None
        if self.parallel.rank == 0 and not self._complete(marker, paths):
            try:
                os.makedirs(self.cache_dir, exist_ok=True)
                arrays = build()
                for name in names:
                    _save_npy(paths[name], arrays[name])
                write_json_atomic(marker, {"format_version": INDEX_FORMAT_VERSION, **description}, indent=1,
                                  default=str)
            except OSError as e:
                error = OSError(f"cannot write the index cache in {self.cache_dir}: {e}; pass a writable "
                                f"--data-cache-path")
            except BaseException as e:  # other ranks must still leave the barrier below
                error = e
        if self.parallel.world_size > 1 and dist.is_initialized():
            dist.barrier()
        if error is not None:
            raise error
        if not self._complete(marker, paths):
            raise RuntimeError(f"rank {self.parallel.rank}: the index cache {marker} is missing after rank 0 "
                               f"built it; is {self.cache_dir} on a file system every rank sees?")
        return {name: load_mapped(paths[name]) for name in names}

    @staticmethod
    def _complete(marker: str, paths: dict[str, str]) -> bool:
        return os.path.isfile(marker) and all(os.path.isfile(p) for p in paths.values())
