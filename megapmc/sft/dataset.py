"""The instruction-tuning (SFT) dataset: truncation, packing and batches from mmap-stored samples.

``megapmc.sft.preprocess`` stores every sample as one sequence of ``PREFIX_tokens`` (BOS, prompt,
response, EOS) and the same-length sequence of ``PREFIX_loss_mask`` (uint8: 1 on response tokens and
the EOS, 0 on BOS and prompt). Truncation and packing happen here, at load time, from the memory-mapped
lengths alone, so one preprocessed dataset serves any ``seq_length`` and nothing is read until a row is.

**Rows.** A row holds ``seq_length + 1`` tokens; the trainer feeds ``tokens[:-1]`` and predicts
``tokens[1:]``. A sample longer than a row is truncated by ``truncate_sample``: the response is kept
and the prompt is cut from the left (its first token, BOS, stays), down to ``min_prompt_tokens``; only
a response that alone overflows the row is cut (at its end), and counted.

**Steps.** An optimizer step consumes exactly ``samples_per_step`` samples (``--global-batch-size``),
however they pack: the samples are shuffled per epoch (seeded), cut into consecutive steps (a step may
run across an epoch boundary), and each step's samples are placed into rows on their own:

- **packing** (default): by best fit into as few rows as they need, each sample starting at position 0
  (``position_ids`` restart) with its own ``segment_ids`` value so that attention stays inside it; the
  tail of a row is padding in a segment of its own.
- **padding**: one sample per row, padded.

A step's row count is then padded with empty rows (no sample, loss mask 0) to a multiple of
``rows_multiple`` (the data-parallel size), so every rank gets the same share of rows and runs the
same number of micro-batches; how many varies with how the step's samples pack. Every row carries
``num_samples``, which the trainer sums to log the samples each step consumed. The loss stays the
token mean over the step's response tokens (the trainer counts them across micro-batches and ranks).

``loss_mask[j] = response_mask[j + 1]``: label ``j`` counts only when it is a response token of the same
sample, which also leaves out every prediction across a sample boundary (the next sample starts with
its BOS, a prompt token).

**Epochs.** Epoch ``e`` is its own shuffle; when the data was preprocessed with per-epoch instruction
redraws (``PREFIX_epochs.npy``), epoch ``e`` also takes the ``e``-th drawing of every record. The plan
is made at construction (``add_epoch`` extends it) and ``dataset[i]`` depends on ``i`` alone, so
resuming from ``consumed_samples`` (a multiple of ``samples_per_step``) yields the same rows as an
uninterrupted run.
"""
from __future__ import annotations

import bisect
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from megapmc.data.indexed_dataset import IndexedDataset

FORMAT_VERSION = 1


def tokens_prefix(prefix: str | Path) -> str:
    return f"{prefix}_tokens"


def loss_mask_prefix(prefix: str | Path) -> str:
    return f"{prefix}_loss_mask"


def epochs_path(prefix: str | Path) -> Path:
    return Path(f"{prefix}_epochs.npy")


def metadata_path(prefix: str | Path) -> Path:
    return Path(f"{prefix}_sft.json")


@dataclass
class SFTDataConfig:
    """The instruction data of a fine-tuning run."""

    data_prefix: str
    packing: bool = True
    min_prompt_tokens: int = 16  # a truncated prompt keeps at least this much (BOS + its tail)
    valid_fraction: float = 0.0  # samples held out for validation (chosen by a seeded hash)
    max_open_rows: int = 512  # best-fit packing keeps this many partly filled rows open
    num_workers: int = 2  # data-loader worker processes per rank

    def __post_init__(self):
        if not metadata_path(self.data_prefix).is_file():
            raise FileNotFoundError(
                f"--data-path {self.data_prefix}: {metadata_path(self.data_prefix)} is missing; preprocess the "
                f"instruction JSONL first (tools/preprocess_sft.py --output-prefix {self.data_prefix})")
        if self.min_prompt_tokens < 1:
            raise ValueError(f"--min-prompt-tokens must be >= 1, got {self.min_prompt_tokens}")
        if not 0.0 <= self.valid_fraction < 1.0:
            raise ValueError(f"--valid-fraction must be in [0, 1), got {self.valid_fraction}")
        if self.max_open_rows < 1:
            raise ValueError(f"max_open_rows must be >= 1, got {self.max_open_rows}")
        if self.num_workers < 0:
            raise ValueError(f"--num-workers must be >= 0, got {self.num_workers}")


def truncate_sample(tokens: np.ndarray, mask: np.ndarray, max_len: int,
                    min_prompt_tokens: int) -> tuple[np.ndarray, np.ndarray, str]:
    """Fit one sample into ``max_len`` tokens; returns ``(tokens, mask, kind)``.

    ``kind`` is ``"none"`` (it fitted), ``"prompt"`` (the prompt was cut from the left, the response
    is whole) or ``"response"`` (the prompt is down to ``min_prompt_tokens`` and the response was cut
    at its end, losing its EOS).
    """
    n = len(tokens)
    if n <= max_len:
        return tokens, mask, "none"
    response_start = int(np.argmax(mask)) if mask.any() else n
    n_response = n - response_start
    keep_prompt = min(response_start, max(max_len - n_response, min(min_prompt_tokens, max_len - 1)))
    # BOS + the last keep_prompt - 1 prompt tokens: the end of the prompt holds "### Response:".
    prompt_idx = np.concatenate([[0], np.arange(response_start - (keep_prompt - 1), response_start)])
    keep_response = max_len - keep_prompt
    idx = np.concatenate([prompt_idx, np.arange(response_start, response_start + keep_response)]).astype(np.int64)
    kind = "prompt" if keep_response == n_response else "response"
    return tokens[idx], mask[idx], kind


def truncated_length(length: np.ndarray, max_len: int) -> np.ndarray:
    return np.minimum(length, max_len)


def pack_best_fit(lengths: np.ndarray, capacity: int, max_open_rows: int) -> tuple[np.ndarray, np.ndarray]:
    """Place items (in the given order) into rows of ``capacity`` tokens by best fit.

    Each item goes into the open row whose free space fits it most tightly, else into a new row. At most
    ``max_open_rows`` rows stay open (the fullest is closed first), which bounds the search while
    keeping the fill close to that of unbounded best fit. Returns ``(row_ptr, items)``: row ``r`` holds
    items ``items[row_ptr[r]:row_ptr[r + 1]]`` (positions into ``lengths``), in placement order.
    """
    if len(lengths) and int(lengths.max()) > capacity:
        raise ValueError(f"an item of {int(lengths.max())} tokens does not fit a row of {capacity}")
    rows: list[list[int]] = []
    free: list[tuple[int, int]] = []  # sorted (free tokens, row) of the open rows
    for item, length in enumerate(lengths.tolist()):
        at = bisect.bisect_left(free, (length, -1))
        if at < len(free):
            space, row = free.pop(at)
        else:
            space, row = capacity, len(rows)
            rows.append([])
        rows[row].append(item)
        space -= length
        if space > 0:
            bisect.insort(free, (space, row))
            if len(free) > max_open_rows:
                free.pop(0)
    row_ptr = np.zeros(len(rows) + 1, dtype=np.int64)
    np.cumsum([len(r) for r in rows], out=row_ptr[1:])
    items = np.fromiter((i for r in rows for i in r), dtype=np.int64, count=int(row_ptr[-1]))
    return row_ptr, items


def read_metadata(prefix: str | Path) -> dict:
    path = metadata_path(prefix)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing; {prefix} is not a preprocessed SFT dataset (or its "
                                f"preprocessing did not finish)")
    meta = json.loads(path.read_text())
    if meta.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{path}: format_version {meta.get('format_version')} is not {FORMAT_VERSION}; "
                         f"preprocess the data again with this megapmc")
    return meta


def split_samples(num_records: int, valid_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Record indices for training and validation; a seeded hash puts ``valid_fraction`` aside."""
    if valid_fraction == 0.0:
        return np.arange(num_records, dtype=np.int64), np.zeros(0, dtype=np.int64)
    rng = np.random.default_rng([seed, 0x5F7])
    valid = rng.random(num_records) < valid_fraction
    return np.flatnonzero(~valid), np.flatnonzero(valid)


class SFTDataset(torch.utils.data.Dataset):
    """Rows of packed (or padded) instruction samples, planned step by step; see the module docstring.

    Args:
        prefix: the preprocessed data (``PREFIX_tokens``, ``PREFIX_loss_mask``, ``PREFIX_sft.json``).
        seq_length: tokens a row feeds to the model (a row stores ``seq_length + 1``).
        records: which records (0 .. ``num_records - 1``) this dataset draws from, e.g. a train split.
        samples_per_step: samples of one optimizer step (``--global-batch-size``); ``None``: a whole
            epoch is one step.
        rows_multiple: each step's row count is padded with empty rows to a multiple of this (the
            data-parallel size), so every rank gets as many rows.
        num_epochs: passes over ``records`` planned at construction (``add_epoch`` plans more).
    """

    def __init__(self, prefix: str | Path, seq_length: int, records: np.ndarray | None = None,
                 samples_per_step: int | None = None, rows_multiple: int = 1, num_epochs: int = 1,
                 seed: int = 1234, packing: bool = True, min_prompt_tokens: int = 16,
                 max_open_rows: int = 512, pad_id: int | None = None):
        if seq_length < 2:
            raise ValueError(f"seq_length must be >= 2, got {seq_length}")
        if num_epochs < 1:
            raise ValueError(f"num_epochs must be >= 1, got {num_epochs}")
        if samples_per_step is not None and samples_per_step < 1:
            raise ValueError(f"samples_per_step must be >= 1, got {samples_per_step}")
        if rows_multiple < 1:
            raise ValueError(f"rows_multiple must be >= 1, got {rows_multiple}")
        self.prefix, self.seq_length, self.packing = str(prefix), seq_length, packing
        self.min_prompt_tokens, self.seed, self._max_open_rows = min_prompt_tokens, seed, max_open_rows
        meta = read_metadata(prefix)
        self.tokens = IndexedDataset(tokens_prefix(prefix))
        self.masks = IndexedDataset(loss_mask_prefix(prefix))
        if not np.array_equal(self.tokens.sequence_lengths, self.masks.sequence_lengths):
            raise ValueError(f"{prefix}: the token and loss-mask datasets disagree on sample lengths "
                             f"(mixed files from two runs?); preprocess again")
        self.pad_id = meta["pad_id"] if pad_id is None else pad_id
        num_records = meta["num_records"]
        self.epoch_samples = (np.load(epochs_path(prefix)) if epochs_path(prefix).is_file()
                              else np.arange(num_records, dtype=np.int64)[None, :])  # [draws, records]
        records = np.arange(num_records, dtype=np.int64) if records is None else np.asarray(records, np.int64)
        if len(records) == 0:
            raise ValueError(f"{prefix}: no samples to train on (empty dataset or split)")
        if records.min() < 0 or records.max() >= num_records:
            raise IndexError(f"{prefix}: record indices must lie in [0, {num_records})")
        if self.epoch_samples.shape[1] != num_records or self.epoch_samples.max() >= len(self.tokens):
            raise ValueError(f"{epochs_path(prefix)} does not match {metadata_path(prefix)} (files from two "
                             f"preprocessing runs?); preprocess again")
        self.records = records
        self.samples_per_step = len(records) if samples_per_step is None else samples_per_step
        self.rows_multiple = rows_multiple
        self.num_epochs = 0
        self._pending = np.zeros(0, dtype=np.int64)  # shuffled samples not yet given to a step
        self._step_ptr = [0]  # first row of each step (global row indices)
        self._row_ptrs, self._row_items = [], []  # per step: rows -> positions into items, sample indices
        for _ in range(num_epochs):
            self.add_epoch()

    @property
    def num_steps(self) -> int:
        return len(self._row_ptrs)

    def add_epoch(self) -> int:
        """Shuffle one more pass over the records and plan every step it completes; returns their number.

        Steps run on across epochs: samples left over at an epoch's end open the next step.
        """
        epoch = self.num_epochs
        order = np.random.default_rng([self.seed, epoch]).permutation(len(self.records))
        samples = self.epoch_samples[epoch % len(self.epoch_samples)][self.records[order]]
        self._pending = np.concatenate([self._pending, samples])
        self.num_epochs += 1
        before = self.num_steps
        while len(self._pending) >= self.samples_per_step:
            self._plan_step(self._pending[:self.samples_per_step])
            self._pending = self._pending[self.samples_per_step:]
        return self.num_steps - before

    def _plan_step(self, samples: np.ndarray) -> None:
        capacity = self.seq_length + 1
        if self.packing:
            lengths = truncated_length(self.tokens.sequence_lengths[samples].astype(np.int64), capacity)
            row_ptr, items = pack_best_fit(lengths, capacity, self._max_open_rows)
            items = samples[items]
        else:
            row_ptr, items = np.arange(len(samples) + 1, dtype=np.int64), samples
        empty = -(len(row_ptr) - 1) % self.rows_multiple  # rows that only even out the ranks' shares
        row_ptr = np.concatenate([row_ptr, np.full(empty, row_ptr[-1], dtype=np.int64)])
        self._row_ptrs.append(row_ptr)
        self._row_items.append(items)
        self._step_ptr.append(self._step_ptr[-1] + len(row_ptr) - 1)

    def step_rows(self, step: int) -> tuple[int, int]:
        """``[first, last)``: the rows of ``step`` (a multiple of ``rows_multiple`` of them)."""
        return self._step_ptr[step], self._step_ptr[step + 1]

    def __len__(self) -> int:
        return self._step_ptr[-1]

    def row_samples(self, idx: int) -> np.ndarray:
        """Sample indices (into the stored sequences) packed in row ``idx``; empty for a padding row."""
        if not 0 <= idx < len(self):
            raise IndexError(f"row {idx} out of range for an SFT dataset of {len(self)} rows")
        step = bisect.bisect_right(self._step_ptr, idx) - 1
        row = idx - self._step_ptr[step]
        ptr = self._row_ptrs[step]
        return self._row_items[step][ptr[row]:ptr[row + 1]]

    def sample(self, sample_idx: int) -> tuple[np.ndarray, np.ndarray, str]:
        """One stored sample, truncated to a row: ``(tokens, response_mask, truncation kind)``."""
        return truncate_sample(np.asarray(self.tokens[sample_idx], dtype=np.int64),
                               np.asarray(self.masks[sample_idx], dtype=np.int64),
                               self.seq_length + 1, self.min_prompt_tokens)

    def __getitem__(self, idx: int) -> dict[str, torch.Tensor]:
        capacity = self.seq_length + 1
        tokens = np.full(capacity, self.pad_id, dtype=np.int64)
        response = np.zeros(capacity, dtype=np.int64)
        segments = np.zeros(capacity, dtype=np.int64)
        positions = np.zeros(capacity, dtype=np.int64)
        offset = 0
        samples = self.row_samples(idx)
        for segment, sample_idx in enumerate(samples):
            t, m, _ = self.sample(int(sample_idx))
            end = offset + len(t)
            tokens[offset:end], response[offset:end] = t, m
            segments[offset:end], positions[offset:end] = segment, np.arange(len(t))
            offset = end
        # Padding forms a segment of its own, so no real token attends to it (nor it to them).
        segments[offset:] = len(samples)
        positions[offset:] = np.arange(capacity - offset)
        return {
            "tokens": torch.from_numpy(tokens),  # [s+1]
            "loss_mask": torch.from_numpy(response[1:].astype(np.float32)),  # [s], aligned with tokens[1:]
            "position_ids": torch.from_numpy(positions[:-1]),  # [s]
            "segment_ids": torch.from_numpy(segments[:-1]),  # [s]
            "num_samples": torch.tensor(len(samples), dtype=torch.int64),  # the trainer counts consumed samples
        }

    def truncation_counts(self) -> dict[str, int]:
        """How many of this dataset's samples (first drawing) need truncation at this ``seq_length``."""
        lengths = self.tokens.sequence_lengths[self.epoch_samples[0][self.records]]
        return {"samples": int(len(lengths)), "truncated": int((lengths > self.seq_length + 1).sum())}
