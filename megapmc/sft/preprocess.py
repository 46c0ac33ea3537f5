"""Tokenise instruction JSONL into mmap datasets: tokens + response masks, one sequence per sample.

A sample is ``[BOS] + encode(prompt + output) + [EOS]`` with ``prompt = build_prompt(instruction, input)``;
the mask is 1 on the response tokens and the EOS, from ``len(encode(prompt))`` on (``encode_samples``), so
the prompt encodes the same here as in generation and the response is what the model generates after it.

Files, all written under temporary names and renamed when complete (``PREFIX_sft.json`` last: a prefix
without it is unfinished and is refused by the loader):

- ``PREFIX_tokens.bin/.idx``: token ids (Megatron's indexed format, through the C++ builder);
- ``PREFIX_loss_mask.bin/.idx``: uint8 response masks, same lengths;
- ``PREFIX_epochs.npy`` (with ``redraw_epochs > 1``): int64 ``[draws, records]``, the stored sample of each
  record in each drawing; records drawn from an instruction pool get a fresh instruction per drawing,
  the others reuse their first sample;
- ``PREFIX_sft.json``: counts, token statistics, the tokenizer's special ids, the format version.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np
from tqdm import tqdm

from megapmc.data.indexed_dataset import IndexedDatasetBuilder, best_dtype
from megapmc.sft.dataset import (
    FORMAT_VERSION,
    epochs_path,
    loss_mask_prefix,
    metadata_path,
    tokens_prefix,
)
from megapmc.sft.sources.common import Problems, iter_jsonl, require_str
from megapmc.sft.sources.conversations import InstructionPools
from megapmc.sft.template import build_prompt
from megapmc.utils.io import atomic_open, replace, write_json_atomic


@dataclass
class PreprocessConfig:
    input: str
    output_prefix: str
    redraw_epochs: int = 1  # drawings of pooled instructions (one per training epoch, cycled)
    instruction_pools: str | None = None  # OUT.jsonl.pools.json of the build; default: next to the input
    seed: int = 1234
    batch_size: int = 1024  # records tokenised together
    workers: int = 1  # tokeniser threads
    strict: bool = False

    def __post_init__(self):
        if not Path(self.input).is_file():
            raise FileNotFoundError(f"--input {self.input}: file not found")
        if self.redraw_epochs < 1:
            raise ValueError(f"--redraw-epochs must be >= 1, got {self.redraw_epochs}")
        if self.batch_size < 1 or self.workers < 1:
            raise ValueError("--batch-size and --workers must be >= 1")
        if self.instruction_pools is None and self.redraw_epochs > 1:
            default = Path(self.input + ".pools.json")
            if not default.is_file():
                raise FileNotFoundError(
                    f"--redraw-epochs {self.redraw_epochs} needs the instruction pools: {default} is missing; "
                    f"pass --instruction-pools FILE (written by tools/build_instruction_data.py)")
            self.instruction_pools = str(default)


@dataclass
class PreprocessSummary:
    records: int = 0
    samples: int = 0
    tokens: int = 0
    response_tokens: int = 0
    redrawn_samples: int = 0
    separately_encoded: int = 0  # samples whose response could not be encoded as the prompt's continuation
    max_length: int = 0
    length_percentiles: dict[str, int] = field(default_factory=dict)
    bad_records: int = 0
    problems: list[str] = field(default_factory=list)


@dataclass
class _Record:
    instruction: str
    input: str
    output: str
    id: str
    pool: str | None


def _records(path: str, problems: Problems) -> Iterator[_Record]:
    for line, item in iter_jsonl(path, "instructions", problems):
        try:
            instruction = require_str(item, "instruction")
            input_text = require_str(item, "input", allow_empty=True) if "input" in item else ""
            output = require_str(item, "output")
        except ValueError as e:
            problems.report("instructions", path, line, str(e))
            continue
        pool = item.get("instruction_pool")
        yield _Record(instruction, input_text, output, str(item.get("id", line)),
                      pool if isinstance(pool, str) else None)


def encode_samples(prompts: list[str], responses: list[str], tokenizer,
                   workers: int = 1) -> tuple[list[tuple[np.ndarray, np.ndarray]], int]:
    """``(tokens, response_mask)`` per prompt/response pair, and how many pairs fell back (see below).

    A sample is BOS + ``encode(prompt + response)`` + EOS, its mask 1 from ``len(encode(prompt))`` on:
    the response is tokenised as the continuation of the prompt, as the model produces it after the
    encoded prompt at inference (a response encoded alone would start with a word-start piece, e.g.
    ``▁###``, that never follows ``### Response:``). When the joint encoding does not begin with the
    prompt's own tokens (a piece spanning the boundary), the prompt keeps its own encoding and the
    response is encoded alone; those pairs are counted.
    """
    if tokenizer.eos_id is None:
        raise ValueError(f"{tokenizer!r} has no EOS token; instruction tuning ends every response with EOS")
    bos = [] if tokenizer.bos_id is None else [tokenizer.bos_id]
    prompt_ids = tokenizer.encode_batch(prompts, num_threads=workers)
    joint_ids = tokenizer.encode_batch([p + r for p, r in zip(prompts, responses)], num_threads=workers)
    out, fallbacks = [], 0
    for p, joint, response in zip(prompt_ids, joint_ids, responses):
        p, joint = list(p), list(joint)
        if joint[:len(p)] == p and len(joint) > len(p):
            r = joint[len(p):]
        else:
            fallbacks += 1
            r = list(tokenizer.encode(response))
        n_prompt, n_response = len(bos) + len(p), len(r) + 1
        tokens = np.fromiter([*bos, *p, *r, tokenizer.eos_id], dtype=np.int64, count=n_prompt + n_response)
        mask = np.zeros(n_prompt + n_response, dtype=np.uint8)
        mask[n_prompt:] = 1
        out.append((tokens, mask))
    return out, fallbacks


def _batches(records: Iterator[_Record], size: int) -> Iterator[list[_Record]]:
    batch = []
    for record in records:
        batch.append(record)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def preprocess_sft(config: PreprocessConfig, tokenizer, progress: bool = True) -> PreprocessSummary:
    """Tokenise ``config.input`` into the datasets at ``config.output_prefix``; return the summary."""
    problems = Problems(strict=config.strict)
    pools = InstructionPools.load_saved(config.instruction_pools) if config.instruction_pools else None
    prefix = config.output_prefix
    tmp = f"{prefix}.tmp-{os.getpid()}"
    dtype = best_dtype(tokenizer.vocab_size)
    summary = PreprocessSummary()
    lengths: list[int] = []
    pooled: list[_Record] = []  # records drawn from a pool, redrawn per epoch
    pooled_index: list[int] = []

    def write(builders, encoded):
        samples, fallbacks = encoded
        summary.separately_encoded += fallbacks
        sizes = np.fromiter((len(t) for t, _ in samples), dtype=np.int64, count=len(samples))
        masks = np.concatenate([m for _, m in samples])
        builders[0].add_documents(np.concatenate([t for t, _ in samples]), sizes)  # one C++ call per batch
        builders[1].add_documents(masks, sizes)
        lengths.extend(sizes.tolist())
        summary.tokens += int(sizes.sum())
        summary.response_tokens += int(masks.sum(dtype=np.int64))

    with IndexedDatasetBuilder(tokens_prefix(tmp), dtype=dtype) as tok_b, \
            IndexedDatasetBuilder(loss_mask_prefix(tmp), dtype=np.uint8) as mask_b:
        bar = tqdm(desc="tokenising", unit=" rec", disable=not progress)
        for batch in _batches(_records(config.input, problems), config.batch_size):
            prompts = [build_prompt(r.instruction, r.input) for r in batch]
            write((tok_b, mask_b), encode_samples(prompts, [r.output for r in batch], tokenizer, config.workers))
            if config.redraw_epochs > 1:
                for i, r in enumerate(batch):
                    if r.pool is not None:
                        pooled.append(r)
                        pooled_index.append(summary.records + i)
            summary.records += len(batch)
            bar.update(len(batch))
        bar.close()

        draws = np.tile(np.arange(summary.records, dtype=np.int64), (config.redraw_epochs, 1))
        for epoch in range(1, config.redraw_epochs):
            for start in range(0, len(pooled), config.batch_size):
                batch = pooled[start:start + config.batch_size]
                prompts = [build_prompt(pools.draw(r.pool, config.seed, r.id, epoch), r.input) for r in batch]
                first = tok_b.num_sequences
                write((tok_b, mask_b), encode_samples(prompts, [r.output for r in batch], tokenizer,
                                                      config.workers))
                draws[epoch, pooled_index[start:start + len(batch)]] = np.arange(first, first + len(batch))
        summary.samples = tok_b.num_sequences
        summary.redrawn_samples = summary.samples - summary.records
        if summary.records == 0:
            raise ValueError(f"{config.input}: no usable records\n{problems.summary()}")
        tok_b.finalize()
        mask_b.finalize()

    summary.max_length = max(lengths)
    summary.length_percentiles = {f"p{q}": int(np.percentile(lengths, q)) for q in (50, 90, 99)}
    summary.bad_records, summary.problems = problems.total, problems.examples
    meta = {
        "format_version": FORMAT_VERSION,
        "input": str(config.input),
        "num_records": summary.records,
        "redraw_epochs": config.redraw_epochs,
        "seed": config.seed,
        "vocab_size": tokenizer.vocab_size,
        "bos_id": tokenizer.bos_id,
        "eos_id": tokenizer.eos_id,
        # Padding is never attended to nor counted, so EOS serves when the tokenizer has no pad token.
        "pad_id": tokenizer.pad_id if tokenizer.pad_id is not None else tokenizer.eos_id,
        "summary": vars(summary),
    }
    # An older dataset at this prefix stays whole until here; without its metadata it is never half-read.
    metadata_path(prefix).unlink(missing_ok=True)
    for suffix in (".bin", ".idx"):
        replace(tokens_prefix(tmp) + suffix, tokens_prefix(prefix) + suffix)
        replace(loss_mask_prefix(tmp) + suffix, loss_mask_prefix(prefix) + suffix)
    if config.redraw_epochs > 1:
        with atomic_open(epochs_path(prefix), "wb") as f:
            np.save(f, draws)
    else:
        epochs_path(prefix).unlink(missing_ok=True)
    write_json_atomic(metadata_path(prefix), meta, indent=1)
    return summary
