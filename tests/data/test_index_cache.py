"""The index cache is keyed by the settings and the shard's fingerprint; rank 0 builds, the others map."""
import os

import numpy as np
import pytest

from blend_helpers import random_docs, write_shard
from megapmc.data.gpt_dataset import GPTDataset
from megapmc.data.index_cache import IndexCache, shard_fingerprint
from megapmc.data.indexed_dataset import IndexedDataset
from megapmc.parallel.state import ParallelState
from megapmc.testing.distributed import run_distributed


def counting_build(calls, value=1):
    def build():
        calls.append(1)
        return {"a": np.arange(5) * value, "b": np.ones((2, 2), dtype=np.int32)}
    return build


def test_second_use_maps_the_files_without_rebuilding(tmp_path):
    cache, calls = IndexCache(str(tmp_path), ParallelState.single()), []
    first = cache.get_or_build({"kind": "t", "x": 1}, counting_build(calls), ["a", "b"])
    again = cache.get_or_build({"kind": "t", "x": 1}, counting_build(calls), ["a", "b"])
    other = cache.get_or_build({"kind": "t", "x": 2}, counting_build(calls, 2), ["a", "b"])
    assert len(calls) == 2
    assert again["a"].base is not None and not again["a"].flags.writeable  # a map of the file, not a copy
    np.testing.assert_array_equal(first["a"], again["a"])
    np.testing.assert_array_equal(other["a"], np.arange(5) * 2)
    assert not any(name.endswith(".tmp") or ".tmp-" in name for name in os.listdir(tmp_path))


def test_incomplete_entry_is_rebuilt(tmp_path):
    cache, calls = IndexCache(str(tmp_path), ParallelState.single()), []
    cache.get_or_build({"kind": "t"}, counting_build(calls), ["a", "b"])
    marker, _ = cache.paths({"kind": "t"}, ["a", "b"])
    os.remove(marker)  # as if the builder died before finishing
    cache.get_or_build({"kind": "t"}, counting_build(calls), ["a", "b"])
    assert len(calls) == 2


def test_rebuilt_shard_gets_fresh_indices(tmp_path):
    """Megatron keys on the path and reuses stale indices; a changed shard must not."""
    prefix = tmp_path / "books_text_document"
    write_shard(prefix, random_docs(30, seed=0, base=3000))
    cache = IndexCache(str(tmp_path / "cache"), ParallelState.single())
    before = GPTDataset(IndexedDataset(prefix), "books", "train", (0, 30), 50, 8, 1, cache)
    old_fp = shard_fingerprint(str(prefix))
    tokens_before = before.get_tokens(np.arange(50))
    write_shard(prefix, random_docs(30, seed=1, base=3000))  # same path, same document count, other data
    assert shard_fingerprint(str(prefix)) != old_fp
    after = GPTDataset(IndexedDataset(prefix), "books", "train", (0, 30), 50, 8, 1, cache)
    reference = GPTDataset(IndexedDataset(prefix), "books", "train", (0, 30), 50, 8, 1, cache=None)
    np.testing.assert_array_equal(after.get_tokens(np.arange(50)), reference.get_tokens(np.arange(50)))
    assert not np.array_equal(tokens_before, after.get_tokens(np.arange(50)))
    assert len([n for n in os.listdir(tmp_path / "cache") if n.endswith("-description.json")]) == 2


def test_unwritable_cache_dir_names_it(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    cache = IndexCache(str(blocker / "cache"), ParallelState.single())
    with pytest.raises(OSError, match="cannot write the index cache in .*file/cache"):
        cache.get_or_build({"kind": "t"}, counting_build([]), ["a"])


def _rank_zero_builds(rank, world_size, cache_dir, prefix):
    import torch.distributed as dist

    parallel = ParallelState(rank=rank, world_size=world_size, dp_rank=rank, dp_size=world_size)
    cache = IndexCache(cache_dir, parallel)

    def build():
        if rank != 0:
            raise AssertionError("only rank 0 may build")
        return {"a": np.arange(7)}

    out = cache.get_or_build({"kind": "dist"}, build, ["a"])
    assert not out["a"].flags.writeable and out["a"].tolist() == list(range(7))
    ds = GPTDataset(IndexedDataset(prefix), "books", "train", (0, 30), 40, 8, 3, cache)
    gathered = [None] * world_size
    dist.all_gather_object(gathered, ds.get_tokens(np.arange(40)).tolist())
    assert gathered[0] == gathered[1]

    def failing():
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full" if rank == 0 else "missing after rank 0"):
        cache.get_or_build({"kind": "fails"}, failing, ["a"])


@pytest.mark.distributed
@pytest.mark.slow
def test_rank_zero_builds_others_wait_and_map(tmp_path):
    prefix = write_shard(tmp_path / "books_text_document", random_docs(30, seed=0, base=3000))
    run_distributed(_rank_zero_builds, 2, str(tmp_path / "cache"), prefix)
