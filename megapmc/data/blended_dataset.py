"""The blend of several sources with EXACT integer per-source counts in every global batch.

The blending index (``csrc/dataset_helpers.cpp``) gives global batch ``b`` the counts that keep every
source's running total within one sample of ``weight_k / sum(weights) * gbs * (b + 1)``; when the
weights divide the batch (15:4:1 of 3200) every batch holds exactly 2400/640/160. Inside the batch, each
slice of ``micro_batch_size`` samples (one micro-batch on one data-parallel rank, in the order the sampler
hands them out) gets floor or ceil of its share of each source.

:func:`build_pretraining_datasets` is what the trainer calls: it opens the shards, splits them, prints
the data plan and returns the train/valid/test blends.
"""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from megapmc import _C
from megapmc.data.config import DataConfig, resolve_source
from megapmc.data.data_plan import DataPlan, integer_weights, make_plan, samples_in
from megapmc.data.gpt_dataset import GPTDataset, TokenSampleDataset, split_bounds
from megapmc.data.index_cache import IndexCache, load_mapped
from megapmc.data.indexed_dataset import IndexedDataset
from megapmc.data.materialized_dataset import open_materialized
from megapmc.parallel.state import ParallelState

BLEND_INDEX_NAMES = ["dataset_index", "dataset_sample_index"]
SPLITS = ("train", "valid", "test")


class BlendedDataset(TokenSampleDataset):
    """``num_samples`` samples from ``datasets`` in the exact per-batch proportions of ``weights``.

    Args:
        datasets: one dataset per source; each must hold at least the samples the blend draws from it.
        names: the sources' names.
        weights: the blend weights (integer or fractional; read as exact ratios).
        global_batch_size: the unit in which counts are exact.
        micro_batch_size: the slice size that gets floor/ceil of each share.
        num_samples: length of the blend.
        cache: where the blending index is cached; ``None`` builds it in memory.
        split: part of the cache key.
    """

    def __init__(self, datasets: Sequence[GPTDataset], names: Sequence[str], weights: Sequence[float],
                 global_batch_size: int, micro_batch_size: int, num_samples: int,
                 cache: Optional[IndexCache] = None, split: str = "train"):
        if len(datasets) != len(weights) or len(names) != len(weights):
            raise ValueError(f"{len(datasets)} datasets, {len(names)} names and {len(weights)} weights differ")
        if global_batch_size % micro_batch_size:
            raise ValueError(f"micro_batch_size {micro_batch_size} does not divide global_batch_size {global_batch_size}")
        self.datasets, self.names = list(datasets), list(names)
        self.weights = list(weights)
        self.int_weights = integer_weights(self.weights)
        self.global_batch_size, self.micro_batch_size = global_batch_size, micro_batch_size
        self.num_samples = int(num_samples)
        self.seq_length = datasets[0].seq_length
        description = {
            "kind": f"blend-{split}", "weights": self.int_weights, "global_batch_size": global_batch_size,
            "micro_batch_size": micro_batch_size, "num_samples": self.num_samples,
        }
        self._cache_paths: Optional[dict[str, str]] = None
        if cache is None:
            arrays = self._build()
        else:
            arrays = cache.get_or_build(description, self._build, BLEND_INDEX_NAMES)
            self._cache_paths = cache.paths(description, BLEND_INDEX_NAMES)[1]
        self.dataset_index, self.dataset_sample_index = arrays["dataset_index"], arrays["dataset_sample_index"]
        self._gatherer = None  # built on first use, in each process
        self.source_samples = self._draws()
        for name, ds, drawn in zip(self.names, self.datasets, self.source_samples):
            if drawn > len(ds):
                raise ValueError(f"the blend draws {drawn} samples from {name!r} but its dataset holds {len(ds)}")

    def _build(self) -> dict[str, np.ndarray]:
        di, dsi, _ = _C.build_blending_indices(np.asarray(self.int_weights, dtype=np.int64), self.global_batch_size,
                                               self.micro_batch_size, self.num_samples)
        return {"dataset_index": di, "dataset_sample_index": dsi}

    def _draws(self) -> list[int]:
        counts = np.bincount(np.asarray(self.dataset_index), minlength=len(self.datasets))
        return [int(c) for c in counts]

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_gatherer"] = None
        if self._cache_paths is not None:
            for name in BLEND_INDEX_NAMES:
                state.pop(name)
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        if self._cache_paths is not None:
            for name, path in self._cache_paths.items():
                setattr(self, name, load_mapped(path))

    def __len__(self) -> int:
        return self.num_samples

    def sources_of(self, indices) -> np.ndarray:
        """Source index of each sample in ``indices``."""
        return np.asarray(self.dataset_index[np.asarray(indices, dtype=np.int64)])

    def get_tokens(self, indices, dtype=np.int64) -> np.ndarray:
        """Samples ``indices`` as one ``[len(indices), seq_length + 1]`` array."""
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        if self._gatherer is None:
            self._gatherer = _C.SampleGatherer([ds.gather_source() for ds in self.datasets], self.seq_length,
                                               self.dataset_index, self.dataset_sample_index)
        out = np.empty((idx.size, self.seq_length + 1), dtype=dtype)  # [n, s+1]
        self._gatherer.gather(idx, out)
        return out

    def __repr__(self) -> str:
        parts = ", ".join(f"{n}:{w:g}" for n, w in zip(self.names, self.weights))
        return f"BlendedDataset({parts}, samples={self.num_samples:,}, gbs={self.global_batch_size})"


def _check_override(name: str, config_value, value) -> None:
    if config_value is not None and value is not None and config_value != value:
        raise ValueError(f"DataConfig.{name} = {config_value} disagrees with the {name} = {value} passed in; "
                         f"set one of them")


def open_sources(data_config: DataConfig) -> tuple[list[IndexedDataset], list[list[tuple[int, int]]]]:
    """The sources' shards and their train/valid/test document ranges; an empty shard is an error."""
    indexed = [IndexedDataset(s.prefix) for s in data_config.sources]
    for s, ds in zip(data_config.sources, indexed):
        if len(ds) == 0 or ds.num_tokens == 0:
            raise ValueError(f"source {s.name!r}: shard {s.prefix} is empty (no documents); re-run "
                             f"tools/preprocess_data.py or drop it from --data-path")
    return indexed, [split_bounds(len(ds), data_config.split_fractions) for ds in indexed]


def plan_from_config(data_config: DataConfig, seq_length: int, global_batch_size: int, *,
                     train_samples: Optional[int] = None, train_epochs: Optional[float] = None,
                     indexed: Optional[list[IndexedDataset]] = None) -> DataPlan:
    """The data plan of a run on ``data_config``'s sources (their training splits)."""
    if indexed is None:
        indexed = open_sources(data_config)[0]
    sources = data_config.sources
    train_tokens = []
    for ds in indexed:
        begin, end = split_bounds(len(ds), data_config.split_fractions)[0]
        train_tokens.append(int(ds.sequence_lengths[begin:end].sum(dtype=np.int64)))
    epoch_source = resolve_source(data_config.epoch_source, [s.name for s in sources], [s.prefix for s in sources])
    return make_plan([s.name for s in sources], [s.weight for s in sources], train_tokens, seq_length,
                     global_batch_size, train_samples=train_samples, train_epochs=train_epochs,
                     epoch_source=epoch_source, micro_batch_size=data_config.micro_batch_size)


def build_pretraining_datasets(data_config: DataConfig, seq_length: Optional[int], global_batch_size: int,
                               train_samples: Optional[int], train_epochs: Optional[float], seed: Optional[int],
                               parallel: ParallelState, *, verbose: bool = True):
    """Open, split and blend the sources; return ``(train, valid, test, plan)``.

    Exactly one of ``train_samples`` (the trainer passes ``train_iters * global_batch_size``) and
    ``train_epochs`` (passes over the epoch source) is given. ``seq_length`` / ``seed`` override the
    config's when it leaves them unset. ``valid``/``test`` are ``None`` when their split is empty in some
    source. Every rank must call this (rank 0 builds the index caches, the others wait and map them).
    """
    _check_override("seq_length", data_config.seq_length, seq_length)
    _check_override("seed", data_config.seed, seed)
    seq_length = seq_length if seq_length is not None else data_config.seq_length
    seed = seed if seed is not None else data_config.seed
    if global_batch_size < 1:
        raise ValueError(f"--global-batch-size must be >= 1, got {global_batch_size}")
    if data_config.manifest is not None:
        return open_materialized(data_config.manifest, seq_length, global_batch_size, train_samples, train_epochs,
                                 seed, verbose=verbose and parallel.rank == 0)
    if seq_length is None or seed is None:
        raise ValueError("seq_length and seed must be given, in DataConfig or as arguments")
    sources = data_config.sources
    indexed, bounds = open_sources(data_config)
    plan = plan_from_config(data_config, seq_length, global_batch_size, train_samples=train_samples,
                            train_epochs=train_epochs, indexed=indexed)
    if verbose and parallel.rank == 0:
        print(plan.table(), flush=True)
    cache = IndexCache(data_config.resolved_cache_dir(), parallel)
    mbs = data_config.micro_batch_size
    if global_batch_size % mbs:
        raise ValueError(f"DataConfig.micro_batch_size {mbs} does not divide --global-batch-size {global_batch_size}")

    def blend(split: str, blend_sources, shards, ranges, num_samples_per_source: list[int],
              num_samples: int) -> BlendedDataset:
        datasets = [GPTDataset(ds, s.name, split, r, n, seq_length, seed, cache)
                    for ds, s, r, n in zip(shards, blend_sources, ranges, num_samples_per_source)]
        return BlendedDataset(datasets, [s.name for s in blend_sources], [s.weight for s in blend_sources],
                              global_batch_size, mbs, num_samples, cache, split)

    train = blend("train", sources, indexed, [b[0] for b in bounds], plan.source_samples, plan.train_samples)
    evals = []
    for i, split in enumerate(SPLITS[1:], start=1):
        held_out = data_config.valid_sources if split == "valid" else data_config.test_sources
        if held_out:  # separate shards (--valid-data-path / --test-data-path): all their documents
            eval_sources, eval_indexed = held_out, [IndexedDataset(s.prefix) for s in held_out]
            ranges = [(0, len(ds)) for ds in eval_indexed]
        else:
            eval_sources, eval_indexed, ranges = sources, indexed, [b[i] for b in bounds]
        eval_weights = [s.weight for s in eval_sources]
        tokens = [int(ds.sequence_lengths[r[0]:r[1]].sum(dtype=np.int64)) for ds, r in zip(eval_indexed, ranges)]
        per_epoch = [samples_in(t, seq_length) for t in tokens]
        if min(per_epoch) < 1:
            evals.append(None)
            continue
        if data_config.eval_samples is not None:
            n = data_config.eval_samples
        else:  # one pass: as many samples as the blend can draw before any source repeats
            w = integer_weights(eval_weights)
            n = min(p * sum(w) // wk for p, wk in zip(per_epoch, w))
        eval_plan = make_plan([s.name for s in eval_sources], eval_weights, tokens, seq_length, global_batch_size,
                              train_samples=n, micro_batch_size=mbs)
        evals.append(blend(split, eval_sources, eval_indexed, ranges, eval_plan.source_samples, n))
    return train, evals[0], evals[1], plan

