"""GPT pretraining samples from one indexed dataset: ``seq_length + 1`` tokens that run across documents.

Three indices, built in C++ (``csrc/dataset_helpers.cpp``) and cached by :class:`IndexCache`:

* document index: the split's documents once per epoch, shuffled per epoch;
* sample index ``[num_samples + 1, 2]``: (position in the document index, offset) where each sample starts;
  a sample ends where the next begins, inclusive, so consecutive samples share one token (Megatron);
* shuffle index: a permutation of the samples, shuffled within each epoch, so every epoch is one whole
  pass and a partial last epoch is a random subset of it.

Documents are the shard's sequences (one per document, as ``tools/preprocess_data.py`` writes them, with
EOD appended), so samples cross document boundaries at an EOD token.
"""
from __future__ import annotations

import math
import os
from typing import Optional, Sequence

import numpy as np
import torch

from megapmc import _C
from megapmc.data.index_cache import IndexCache, load_mapped, shard_fingerprint
from megapmc.data.indexed_dataset import IndexedDataset

INDEX_NAMES = ["document_index", "sample_index", "shuffle_index"]


def derived_seed(seed: int, stream: int) -> int:
    """Independent 64-bit seeds for the document and sample shuffles from one user seed."""
    return int(np.random.SeedSequence([seed, stream]).generate_state(1, np.uint64)[0])


def num_epochs_for(num_samples: int, tokens_per_epoch: int, seq_length: int) -> int:
    """Fewest passes over ``tokens_per_epoch`` tokens holding ``num_samples`` samples: (E T - 1) // s >= n."""
    return max(1, math.ceil((num_samples * seq_length + 1) / tokens_per_epoch))


def split_bounds(num_documents: int, fractions: Sequence[float]) -> list[tuple[int, int]]:
    """Contiguous document ranges for train/valid/test from the split fractions (rounded cumulatively)."""
    cumulative = np.concatenate([[0.0], np.cumsum(fractions)])
    edges = [int(round(c * num_documents)) for c in cumulative]
    edges[-1] = num_documents
    return [(edges[i], edges[i + 1]) for i in range(len(fractions))]


class TokenSampleDataset(torch.utils.data.Dataset):
    """Base of the pretraining datasets: a subclass gives ``get_tokens(indices) -> [n, seq_length + 1]``;
    items are ``{"tokens": [seq_length + 1]}``, and ``DataLoader`` fetches a whole micro-batch through
    ``__getitems__`` in one call."""

    def get_tokens(self, indices, dtype=np.int64) -> np.ndarray:
        raise NotImplementedError

    def __getitem__(self, idx: int) -> dict[str, torch.Tensor]:
        return {"tokens": torch.from_numpy(self.get_tokens([idx])[0])}

    def __getitems__(self, indices: list[int]) -> list[dict[str, torch.Tensor]]:
        rows = torch.from_numpy(self.get_tokens(indices))  # [n, s+1]
        return [{"tokens": row} for row in rows]


class GPTDataset(TokenSampleDataset):
    """``num_samples`` samples drawn from documents ``[begin, end)`` of ``indexed``.

    Args:
        indexed: the shard.
        name: the source's name (error messages, cache file names).
        split: ``"train"``, ``"valid"`` or ``"test"`` (part of the cache key).
        document_range: ``(begin, end)`` sequence ids of this split.
        num_samples: samples to provide; the indices cover as many epochs as that takes.
        seq_length: each sample holds ``seq_length + 1`` tokens.
        seed: the run's seed.
        cache: where the indices are cached; ``None`` builds them in memory (tests, tools).
    """

    def __init__(self, indexed: IndexedDataset, name: str, split: str, document_range: tuple[int, int],
                 num_samples: int, seq_length: int, seed: int, cache: Optional[IndexCache] = None):
        self.indexed, self.name, self.split = indexed, name, split
        self.seq_length, self.num_samples, self.seed = seq_length, int(num_samples), seed
        begin, end = document_range
        if len(indexed) == 0:
            raise ValueError(f"source {name!r}: shard {indexed.prefix} is empty (no documents); "
                             f"re-run tools/preprocess_data.py or drop it from --data-path")
        if not 0 <= begin < end <= len(indexed):
            raise ValueError(f"source {name!r} ({indexed.prefix}): the {split} split holds no documents "
                             f"(range [{begin}, {end}) of {len(indexed)}); change --split")
        self.document_range = (begin, end)
        self.tokens_per_epoch = int(indexed.sequence_lengths[begin:end].sum(dtype=np.int64))
        self.samples_per_epoch = max(0, (self.tokens_per_epoch - 1) // seq_length)
        if self.samples_per_epoch < 1:
            raise ValueError(f"source {name!r} ({indexed.prefix}): the {split} split holds {self.tokens_per_epoch} "
                             f"tokens in {end - begin} documents, fewer than one sample of seq_length + 1 = "
                             f"{seq_length + 1} tokens; add data, lower --seq-length or change --split")
        if self.num_samples < 0:
            raise ValueError(f"num_samples must be >= 0, got {num_samples}")
        self.num_epochs = num_epochs_for(self.num_samples, self.tokens_per_epoch, seq_length)
        description = {
            "kind": f"gpt-{name}-{split}", "prefix": os.path.abspath(indexed.prefix),
            "fingerprint": shard_fingerprint(indexed.prefix), "document_range": [begin, end],
            "seq_length": seq_length, "seed": seed, "num_samples": self.num_samples,
        }
        self._cache_paths: Optional[dict[str, str]] = None
        if cache is None:
            arrays = self._build()
        else:
            arrays = cache.get_or_build(description, self._build, INDEX_NAMES)
            self._cache_paths = cache.paths(description, INDEX_NAMES)[1]
        self._set_arrays(arrays)

    def _set_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        self._gatherer = None  # built on first use, in each process
        self.document_index = arrays["document_index"]
        self.sample_index = arrays["sample_index"]
        self.shuffle_index = arrays["shuffle_index"]

    def _build(self) -> dict[str, np.ndarray]:
        begin, end = self.document_range
        documents = np.arange(begin, end, dtype=np.int32)
        doc_index = _C.build_document_index(documents, self.num_epochs, derived_seed(self.seed, 0))
        sample_index = _C.build_sample_index(self.indexed.sequence_lengths, doc_index, self.seq_length,
                                             self.num_samples)
        # Sample i belongs to the epoch where it starts; each epoch's samples are shuffled among themselves.
        starts = sample_index[: self.num_samples, 0]
        per_epoch_docs = end - begin
        edges = np.searchsorted(starts, np.arange(1, self.num_epochs, dtype=np.int64) * per_epoch_docs, side="left")
        boundaries = np.concatenate([[0], edges, [self.num_samples]]).astype(np.int64)
        shuffle_index = _C.build_shuffle_index(boundaries, derived_seed(self.seed, 1))
        return {"document_index": doc_index, "sample_index": sample_index, "shuffle_index": shuffle_index}

    # Workers re-map the cached files instead of receiving copies of the arrays.
    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_gatherer"] = None
        if self._cache_paths is not None:
            for name in INDEX_NAMES:
                state.pop(name)
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        if self._cache_paths is not None:
            self._set_arrays({n: load_mapped(p) for n, p in self._cache_paths.items()})

    def __len__(self) -> int:
        return self.num_samples

    def gather_source(self) -> tuple:
        """The arrays :class:`megapmc._C.SampleGatherer` reads this dataset's samples from."""
        return (self.indexed.tokens, self.indexed.sequence_pointers, self.indexed.sequence_lengths,
                self.document_index, self.sample_index, self.shuffle_index)

    def get_tokens(self, indices, dtype=np.int64) -> np.ndarray:
        """Samples ``indices`` as one ``[len(indices), seq_length + 1]`` array, copied in C++."""
        if self._gatherer is None:
            self._gatherer = _C.SampleGatherer([self.gather_source()], self.seq_length)
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        out = np.empty((idx.size, self.seq_length + 1), dtype=dtype)  # [n, s+1]
        self._gatherer.gather(idx, out)
        return out

    def __repr__(self) -> str:
        return (f"GPTDataset({self.name!r}, split={self.split}, samples={self.num_samples:,}, "
                f"epochs={self.num_epochs}, tokens/epoch={self.tokens_per_epoch:,})")
