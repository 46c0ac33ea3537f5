"""Megatron-LM's mmap indexed dataset: ``PREFIX.bin`` (token ids) + ``PREFIX.idx`` (index).

The format is byte-compatible with ``megatron/core/datasets/indexed_dataset.py``, so shards made by
Megatron's tools are read here and the other way round. The layout is documented at the top of
``csrc/indexed_dataset.cpp``, which holds the writer, the merge and the validation (every size and
offset is checked in C++; a damaged file raises :class:`IndexedDatasetError`, a ``ValueError``).

The reader maps both files with ``numpy.memmap``: ``ds[i]`` is a zero-copy view, any sequence is
reached in O(1), and nothing is loaded into Python lists.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np

from megapmc import _C
from megapmc.utils.io import replace, temp_path

IndexedDatasetError = _C.IndexedDatasetError

# Megatron's dtype codes (megatron.core.datasets.indexed_dataset.DType).
DTYPE_CODES: dict[np.dtype, int] = {
    np.dtype(np.uint8): 1,
    np.dtype(np.int8): 2,
    np.dtype(np.int16): 3,
    np.dtype(np.int32): 4,
    np.dtype(np.int64): 5,
    np.dtype(np.float64): 6,
    np.dtype(np.float32): 7,
    np.dtype(np.uint16): 8,
}
CODE_DTYPES: dict[int, np.dtype] = {code: dtype for dtype, code in DTYPE_CODES.items()}


def best_dtype(vocab_size: int | None) -> type:
    """The smallest token dtype for ``vocab_size`` ids: uint16 below 65500 (Megatron's rule), else int32."""
    if vocab_size is not None and vocab_size < 65500:
        return np.uint16
    return np.int32


def data_file_path(prefix: str | os.PathLike) -> str:
    return f"{os.fspath(prefix)}.bin"


def index_file_path(prefix: str | os.PathLike) -> str:
    return f"{os.fspath(prefix)}.idx"


def dataset_exists(prefix: str | os.PathLike) -> bool:
    return os.path.isfile(index_file_path(prefix)) and os.path.isfile(data_file_path(prefix))


def _dtype_code(dtype) -> int:
    dt = np.dtype(dtype)
    if dt not in DTYPE_CODES:
        raise ValueError(f"dtype {dt} is not storable in a Megatron indexed dataset; use one of "
                         f"{sorted(str(d) for d in DTYPE_CODES)}")
    return DTYPE_CODES[dt]


class IndexedDataset:
    """Read-only view of a ``.bin``/``.idx`` pair; one sequence per item.

    Args:
        prefix: path without the ``.bin``/``.idx`` suffix.
        validate: check the whole index against the data file first (O(sequences), in C++).
            Turned off only when re-opening a dataset that was already validated (worker processes).
    """

    def __init__(self, prefix: str | os.PathLike, validate: bool = True):
        self.prefix = os.fspath(prefix)
        self._open(validate)

    def _open(self, validate: bool) -> None:
        idx_path, bin_path = index_file_path(self.prefix), data_file_path(self.prefix)
        for path in (idx_path, bin_path):
            if not os.path.isfile(path):
                raise FileNotFoundError(f"indexed dataset file {path} does not exist (prefix {self.prefix!r}; "
                                        f"pass the path without .bin/.idx)")
        header = _C.validate_index(idx_path, bin_path) if validate else _C.read_index_header(idx_path)
        self._dtype = CODE_DTYPES[header["dtype_code"]]
        s, d = header["sequence_count"], header["document_count"]
        self._index = np.memmap(idx_path, dtype=np.uint8, mode="r")
        # Views into the index map; the arrays are unaligned (34-byte header), which numpy handles.
        self._lengths = np.frombuffer(self._index, np.int32, count=s, offset=header["lengths_offset"])
        self._pointers = np.frombuffer(self._index, np.int64, count=s, offset=header["pointers_offset"])
        self._documents = np.frombuffer(self._index, np.int64, count=d, offset=header["documents_offset"])
        if os.path.getsize(bin_path) > 0:
            self._bin = np.memmap(bin_path, dtype=self._dtype, mode="r").view(np.ndarray)
        else:  # mmap cannot map an empty file
            self._bin = np.empty(0, dtype=self._dtype)

    # Pickling (DataLoader workers, spawn) re-opens the files instead of copying the maps.
    def __getstate__(self) -> dict:
        return {"prefix": self.prefix}

    def __setstate__(self, state: dict) -> None:
        self.prefix = state["prefix"]
        self._open(validate=False)

    def __len__(self) -> int:
        return len(self._lengths)

    def __getitem__(self, idx: int | slice) -> np.ndarray | list[np.ndarray]:
        if isinstance(idx, slice):
            return [self[i] for i in range(*idx.indices(len(self)))]
        return self.get(idx)

    def get(self, idx: int, offset: int = 0, length: int | None = None) -> np.ndarray:
        """Tokens ``[offset, offset + length)`` of sequence ``idx`` as a zero-copy view."""
        n = len(self)
        if not -n <= idx < n:
            raise IndexError(f"sequence {idx} out of range for {self.prefix} with {n} sequences")
        idx %= n
        seq_len = int(self._lengths[idx])
        if length is None:
            length = seq_len - offset
        if offset < 0 or length < 0 or offset + length > seq_len:
            raise IndexError(f"slice [{offset}, {offset + length}) outside sequence {idx} of length {seq_len}")
        start = int(self._pointers[idx]) // self._dtype.itemsize + offset
        return self._bin[start:start + length]

    @property
    def dtype(self) -> np.dtype:
        return self._dtype

    @property
    def sequence_lengths(self) -> np.ndarray:
        """int32 ``[num_sequences]`` view of the index."""
        return self._lengths

    @property
    def sequence_pointers(self) -> np.ndarray:
        """int64 ``[num_sequences]`` byte offsets into ``.bin``."""
        return self._pointers

    @property
    def document_indices(self) -> np.ndarray:
        """int64 ``[num_documents + 1]``: document ``j`` holds sequences ``[doc[j], doc[j+1])``."""
        return self._documents

    @property
    def num_documents(self) -> int:
        return len(self._documents) - 1

    @property
    def num_tokens(self) -> int:
        return int(self._bin.shape[0])

    @property
    def tokens(self) -> np.ndarray:
        """All tokens back to back, as one memory-mapped array."""
        return self._bin

    def check_token_range(self, vocab_size: int) -> None:
        """Raise IndexedDatasetError if any token is outside ``[0, vocab_size)``.

        The format carries no checksum, so this scan (in C++, one pass over ``.bin``) is what catches
        a corrupted data file whose size is still right.
        """
        found = _C.find_token_out_of_range(data_file_path(self.prefix), DTYPE_CODES[self._dtype], vocab_size)
        if found is not None:
            pos, value = found
            seq = int(np.searchsorted(self._pointers, pos * self._dtype.itemsize, side="right")) - 1
            raise IndexedDatasetError(
                f"{data_file_path(self.prefix)}: token {pos} (sequence {seq}) is {value}, outside the "
                f"vocabulary of {vocab_size} ids (corrupt data file or wrong tokenizer)")

    def __repr__(self) -> str:
        return (f"IndexedDataset({self.prefix!r}, sequences={len(self)}, documents={self.num_documents}, "
                f"tokens={self.num_tokens}, dtype={self._dtype})")


class IndexedDatasetBuilder:
    """Writes ``prefix.bin``/``prefix.idx`` through the C++ writer, under temporary names.

    ``finalize()`` renames the files into place (``.bin`` first, then ``.idx``), so a killed run never
    leaves a complete-looking dataset; used as a context manager, an exception removes the temporaries.
    """

    def __init__(self, prefix: str | os.PathLike, dtype=np.uint16):
        self.prefix = os.fspath(prefix)
        self.dtype = np.dtype(dtype)
        code = _dtype_code(self.dtype)
        Path(self.prefix).parent.mkdir(parents=True, exist_ok=True)
        self._bin_tmp = temp_path(data_file_path(self.prefix))
        self._idx_tmp = temp_path(index_file_path(self.prefix))
        self._writer = _C.IndexedDatasetWriter(self._bin_tmp, self._idx_tmp, code)
        self._done = False

    def _as_tokens(self, tokens) -> np.ndarray:
        arr = np.asarray(tokens)
        if arr.dtype != self.dtype:
            if arr.size and np.issubdtype(self.dtype, np.integer):
                info = np.iinfo(self.dtype)
                lo, hi = arr.min(), arr.max()
                if lo < info.min or hi > info.max:
                    raise ValueError(f"token values [{lo}, {hi}] do not fit the dataset dtype {self.dtype} "
                                     f"of {self.prefix}; choose a wider dtype (best_dtype(vocab_size))")
            arr = arr.astype(self.dtype)
        return np.ascontiguousarray(arr.reshape(-1))

    def add_item(self, tokens) -> None:
        """Append one sequence to the current document."""
        self._writer.add_item(self._as_tokens(tokens))

    def end_document(self) -> None:
        self._writer.end_document()

    def add_document(self, tokens) -> None:
        """Append a document made of one sequence (the GPT layout)."""
        self._writer.add_document(self._as_tokens(tokens))

    def add_documents(self, tokens: np.ndarray, lengths: np.ndarray) -> None:
        """Append many one-sequence documents: ``tokens`` back to back, ``lengths`` per document."""
        self._writer.add_documents(self._as_tokens(tokens), np.asarray(lengths, dtype=np.int64))

    def add_index(self, prefix: str | os.PathLike) -> None:
        """Append a whole existing dataset (same dtype) without re-tokenising."""
        self._writer.add_index(os.fspath(prefix))

    @property
    def num_documents(self) -> int:
        return self._writer.document_count

    @property
    def num_sequences(self) -> int:
        return self._writer.sequence_count

    @property
    def num_tokens(self) -> int:
        return self._writer.num_tokens

    def finalize(self) -> None:
        self._writer.finalize()
        replace(self._bin_tmp, data_file_path(self.prefix))
        replace(self._idx_tmp, index_file_path(self.prefix))
        self._done = True

    def discard(self) -> None:
        """Drop the temporary files of an unfinished build."""
        for path in (self._bin_tmp, self._idx_tmp):
            if os.path.exists(path):
                os.remove(path)
        self._done = True

    def __enter__(self) -> "IndexedDatasetBuilder":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None and not self._done:
            self.discard()


def merge_datasets(out_prefix: str | os.PathLike, prefixes: Sequence[str | os.PathLike]) -> IndexedDataset:
    """Concatenate shards (in order, same dtype) into ``out_prefix`` in C++, without re-tokenising."""
    if not prefixes:
        raise ValueError("merge_datasets needs at least one input prefix")
    first = os.fspath(prefixes[0])
    if not os.path.isfile(index_file_path(first)):
        raise FileNotFoundError(f"{index_file_path(first)} does not exist")
    dtype = CODE_DTYPES[_C.read_index_header(index_file_path(first))["dtype_code"]]
    with IndexedDatasetBuilder(out_prefix, dtype=dtype) as builder:
        for prefix in prefixes:
            builder.add_index(prefix)
        builder.finalize()
    return IndexedDataset(out_prefix)
