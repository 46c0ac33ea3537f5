"""JSONL → Megatron indexed dataset (``PREFIX_{key}_document.bin/.idx``), as Megatron-LM's preprocess_data.py.

Pipeline: the reader streams raw lines in input order and hands batches of them to worker processes,
which parse the JSON, tokenize the batch with the tokenizer's own batch encoder and return whole numpy
arrays (tokens back to back + lengths); the writer appends each batch to the C++ builder in one call.
At most ``4 × workers`` batches are in flight, so memory stays constant for any input size.

``partitions = K`` splits the input into K contiguous line ranges processed at the same time (each with
its share of the workers, each writing its own shard); the shards are then merged in order by the C++
merge, so documents keep their input order. Outputs are written under temporary names and renamed only
when complete.
"""
from __future__ import annotations

import collections
import contextlib
import multiprocessing as mp
import os
import queue
import time
import traceback
from dataclasses import dataclass, field
from typing import Callable, ContextManager, Iterable, Iterator

import numpy as np

from megapmc.data.indexed_dataset import IndexedDatasetBuilder, best_dtype, merge_datasets
from megapmc.data.jsonl import count_lines, iter_lines, parse_line
from megapmc.data.tokenizer import build_tokenizer


class PreprocessError(ValueError):
    """Bad input or flags for preprocessing; the message names the file, line or flag."""


@dataclass
class PreprocessConfig:
    input: str
    output_prefix: str
    tokenizer_model: str
    json_keys: tuple[str, ...] = ("text",)
    append_eod: bool = False
    prepend_bos: bool = False
    workers: int = 1
    partitions: int = 1
    strict: bool = False
    batch_size: int = 128  # documents per worker task (a task also ends at 4 MiB of text)
    progress: bool = True

    def __post_init__(self):
        self.json_keys = tuple(self.json_keys)
        if not os.path.isfile(self.input):
            raise PreprocessError(f"--input {self.input} does not exist")
        if not self.json_keys or len(set(self.json_keys)) != len(self.json_keys):
            raise PreprocessError(f"--json-keys must name distinct keys, got {list(self.json_keys)}")
        if self.workers < 1:
            raise PreprocessError(f"--workers must be >= 1, got {self.workers}")
        if not 1 <= self.partitions <= self.workers:
            raise PreprocessError(f"--partitions must be between 1 and --workers ({self.workers}), "
                                  f"got {self.partitions}: each partition needs at least one worker")
        if self.batch_size < 1:
            raise PreprocessError(f"batch_size must be >= 1, got {self.batch_size}")

    def output_prefix_for(self, key: str) -> str:
        return f"{self.output_prefix}_{key}_document"


@dataclass
class PreprocessSummary:
    documents: int = 0
    tokens: dict[str, int] = field(default_factory=dict)  # per JSON key
    lines: int = 0
    blank: int = 0
    empty: int = 0  # records whose every text tokenized to nothing
    skipped_missing_key: int = 0
    skipped_malformed: int = 0
    issues: list[tuple[int, str]] = field(default_factory=list)  # (line, reason), first 1000
    bytes_written: int = 0
    seconds: float = 0.0
    outputs: list[str] = field(default_factory=list)

    @property
    def skipped(self) -> int:
        return self.skipped_missing_key + self.skipped_malformed

    def add(self, other: "PreprocessSummary") -> None:
        self.documents += other.documents
        for k, v in other.tokens.items():
            self.tokens[k] = self.tokens.get(k, 0) + v
        self.lines += other.lines
        self.blank += other.blank
        self.empty += other.empty
        self.skipped_missing_key += other.skipped_missing_key
        self.skipped_malformed += other.skipped_malformed
        self.issues = sorted(self.issues + other.issues)[:1000]

    def format(self, input_path: str) -> str:
        total_tokens = sum(self.tokens.values())
        rate = max(self.seconds, 1e-9)
        out = [
            f"preprocessed {input_path}: {self.documents:,} documents, {total_tokens:,} tokens "
            f"in {self.seconds:.1f} s ({self.documents / rate:,.0f} docs/s, {total_tokens / rate:,.0f} tokens/s)",
            *(f"  {key}: {n:,} tokens" for key, n in self.tokens.items()),
            f"  lines read {self.lines:,}; skipped: {self.skipped_malformed:,} malformed, "
            f"{self.skipped_missing_key:,} missing a key, {self.empty:,} empty, {self.blank:,} blank lines",
            f"  wrote {self.bytes_written:,} bytes: " + ", ".join(p + ".bin/.idx" for p in self.outputs),
        ]
        if self.issues:
            out.append("  problems (line: reason):")
            out += [f"    {input_path}:{n}: {reason}" for n, reason in self.issues[:20]]
            if self.skipped > 20:
                out.append(f"    ... and {self.skipped - 20:,} more")
        return "\n".join(out)


@dataclass
class _EncodedBatch:
    tokens: dict[str, np.ndarray]   # per key: [sum(lengths)] in the dataset dtype
    lengths: dict[str, np.ndarray]  # per key: [documents] int64
    summary: PreprocessSummary
    first_issue: tuple[int, str] | None = None


class DocumentEncoder:
    """Turns a batch of raw JSONL lines into per-key token arrays (runs inside each worker)."""

    def __init__(self, cfg: PreprocessConfig):
        self.cfg = cfg
        self.tokenizer = build_tokenizer(cfg.tokenizer_model)
        self.dtype = best_dtype(self.tokenizer.vocab_size)
        if cfg.append_eod and self.tokenizer.eod is None:
            raise PreprocessError(f"--append-eod: tokenizer {cfg.tokenizer_model} has no EOS/EOD token")
        if cfg.prepend_bos and self.tokenizer.bos_id is None:
            raise PreprocessError(f"--prepend-bos: tokenizer {cfg.tokenizer_model} has no BOS token")

    def encode(self, batch: list[tuple[int, bytes]]) -> _EncodedBatch:
        keys = self.cfg.json_keys
        summary = PreprocessSummary()
        texts: dict[str, list[str]] = {k: [] for k in keys}
        first_issue = None
        for line_no, line in batch:
            summary.lines += 1
            record, reason = parse_line(line)
            if record is None:
                if reason is None:
                    summary.blank += 1
                    continue
                summary.skipped_malformed += 1
            else:
                bad = [k for k in keys if not isinstance(record.get(k), str)]
                if not bad:
                    if all(not record[k] for k in keys):
                        summary.empty += 1
                        continue
                    for k in keys:
                        texts[k].append(record[k])
                    continue
                reason = (f"missing key {bad[0]!r}" if bad[0] not in record
                          else f"key {bad[0]!r} is {type(record[bad[0]]).__name__}, not a string")
                summary.skipped_missing_key += 1
            summary.issues.append((line_no, reason))
            first_issue = first_issue or (line_no, reason)
        summary.documents = len(texts[keys[0]])
        tokens, lengths = {}, {}
        for k in keys:
            flat, lens = self.tokenizer.encode_batch_flat(texts[k], num_threads=1)
            tokens[k], lengths[k] = self._add_specials(flat, lens)
            summary.tokens[k] = int(lengths[k].sum())
        return _EncodedBatch(tokens, lengths, summary, first_issue)

    def _add_specials(self, flat: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Insert BOS before / EOD after every document of a flat batch, and cast to the dataset dtype."""
        bos, eod = int(self.cfg.prepend_bos), int(self.cfg.append_eod)
        if not (bos or eod):
            return flat.astype(self.dtype), lengths
        new_lengths = lengths + bos + eod
        new_ends = np.cumsum(new_lengths)
        new_starts = new_ends - new_lengths
        old_starts = np.cumsum(lengths) - lengths
        out = np.empty(int(new_lengths.sum()), dtype=self.dtype)
        # Each document's tokens move right by (its new start + bos - its old start).
        shift = np.repeat(new_starts + bos - old_starts, lengths)
        out[np.arange(flat.size) + shift] = flat
        if bos:
            out[new_starts] = self.tokenizer.bos_id
        if eod:
            out[new_ends - 1] = self.tokenizer.eod
        return out, new_lengths


# One encoder per worker process, built by the pool initializer.
_worker_encoder: DocumentEncoder | None = None


def _init_worker(cfg: PreprocessConfig) -> None:
    global _worker_encoder
    os.environ["RAYON_NUM_THREADS"] = "1"  # Hugging Face tokenizers: one core per worker
    _worker_encoder = DocumentEncoder(cfg)


def _encode_in_worker(batch: list[tuple[int, bytes]]) -> _EncodedBatch:
    return _worker_encoder.encode(batch)


_MAX_BATCH_BYTES = 4 << 20


def _batched(lines: Iterable[tuple[int, bytes]], size: int) -> Iterator[list[tuple[int, bytes]]]:
    """Batches of ``size`` lines, cut early at 4 MiB so that long books keep memory bounded."""
    batch, nbytes = [], 0
    for item in lines:
        batch.append(item)
        nbytes += len(item[1])
        if len(batch) == size or nbytes >= _MAX_BATCH_BYTES:
            yield batch
            batch, nbytes = [], 0
    if batch:
        yield batch


def ordered_bounded_map(pool, fn, items: Iterable, max_in_flight: int) -> Iterator:
    """``pool.imap`` in input order, but pulling at most ``max_in_flight`` items ahead of the consumer.

    (``Pool.imap`` drains its input as fast as it can, which would read a whole 100 GB file into memory.)
    """
    pending: collections.deque = collections.deque()
    for item in items:
        pending.append(pool.apply_async(fn, (item,)))
        if len(pending) >= max_in_flight:
            yield pending.popleft().get()
    while pending:
        yield pending.popleft().get()


@dataclass
class _Part:
    index: int
    workers: int
    start_line: int = 1
    end_line: int | None = None
    start_offset: int | None = None


def worker_context():
    """Fork where the platform has it: workers start at once instead of re-importing everything (spawn).

    Forking is safe here because the pool is created before this process starts any thread of its own
    (the progress bar comes after) and each worker builds its own tokenizer.
    """
    return mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")


def _part_prefix(cfg: PreprocessConfig, key: str, part: _Part) -> str:
    if cfg.partitions == 1:
        return cfg.output_prefix_for(key)
    return f"{cfg.output_prefix_for(key)}.part{part.index:03d}-of-{cfg.partitions:03d}"


ProgressFactory = Callable[[], ContextManager[Callable[[int, int], None]]]


def _run_part(cfg: PreprocessConfig, part: _Part, progress: ProgressFactory) -> PreprocessSummary:
    """Tokenize one contiguous line range into its own shard(s), one per JSON key.

    ``progress()`` gives the callback ``(documents, tokens)``; it is entered only after the worker pool
    exists, so that no progress-bar or queue thread is running when the pool forks.
    """
    summary = PreprocessSummary(tokens={k: 0 for k in cfg.json_keys})
    batches = _batched(iter_lines(cfg.input, part.start_line, part.end_line, part.start_offset), cfg.batch_size)
    # With one worker the tokenizer runs here; otherwise this process only reads and writes.
    encoder = DocumentEncoder(cfg) if part.workers == 1 else None
    dtype = encoder.dtype if encoder else best_dtype(build_tokenizer(cfg.tokenizer_model).vocab_size)
    builders = {k: IndexedDatasetBuilder(_part_prefix(cfg, k, part), dtype=dtype) for k in cfg.json_keys}
    pool = None
    try:
        if encoder is not None:
            results = map(encoder.encode, batches)
        else:
            pool = worker_context().Pool(part.workers, initializer=_init_worker, initargs=(cfg,))
            results = ordered_bounded_map(pool, _encode_in_worker, batches, 4 * part.workers)
        with progress() as on_progress:
            for res in results:
                if cfg.strict and res.first_issue is not None:
                    line_no, reason = res.first_issue
                    raise PreprocessError(f"{cfg.input}:{line_no}: {reason} (--strict makes this fatal; "
                                          f"drop --strict to skip and count such lines)")
                for k in cfg.json_keys:
                    builders[k].add_documents(res.tokens[k], res.lengths[k])
                summary.add(res.summary)
                on_progress(res.summary.documents, sum(res.summary.tokens.values()))
        if pool is not None:  # let the workers exit on their own (their CPU time is then accounted)
            pool.close()
            pool.join()
        for b in builders.values():
            b.finalize()
    except BaseException:
        for b in builders.values():
            b.discard()
        if pool is not None:
            pool.terminate()
            pool.join()
        raise
    return summary


def _part_process(cfg: PreprocessConfig, part: _Part, events) -> None:
    """Entry point of a partition process: progress and the result go back through ``events``."""
    try:
        report = lambda docs, toks: events.put(("progress", part.index, (docs, toks)))  # noqa: E731
        summary = _run_part(cfg, part, lambda: contextlib.nullcontext(report))
        events.put(("done", part.index, summary))
    except BaseException as e:  # re-raised by the parent
        message = str(e) if isinstance(e, PreprocessError) else traceback.format_exc()
        events.put(("error", part.index, message))


def _progress_bar(cfg: PreprocessConfig, total: int | None):
    from tqdm import tqdm

    return tqdm(total=total, unit="docs", desc=f"preprocess {os.path.basename(cfg.input)}",
                disable=not cfg.progress, dynamic_ncols=True, smoothing=0.1)


def preprocess(cfg: PreprocessConfig) -> PreprocessSummary:
    """Run the whole pipeline; returns the summary (also printed by tools/preprocess_data.py)."""
    start = time.perf_counter()
    tokens_seen = 0

    def advance(bar, docs: int, toks: int) -> None:
        nonlocal tokens_seen
        tokens_seen += toks
        bar.update(docs)
        bar.set_postfix_str(f"{tokens_seen / max(time.perf_counter() - start, 1e-9):,.0f} tokens/s", refresh=False)

    @contextlib.contextmanager
    def bar_progress():
        with _progress_bar(cfg, None) as bar:
            yield lambda docs, toks: advance(bar, docs, toks)

    if cfg.partitions == 1:
        summary = _run_part(cfg, _Part(0, cfg.workers), bar_progress)
    else:
        summary = _run_partitions(cfg, advance)
    summary.seconds = time.perf_counter() - start
    summary.outputs = [cfg.output_prefix_for(k) for k in cfg.json_keys]
    summary.bytes_written = sum(os.path.getsize(p + ext) for p in summary.outputs for ext in (".bin", ".idx"))
    return summary


def _run_partitions(cfg: PreprocessConfig, advance) -> PreprocessSummary:
    num_lines, starts, offsets = count_lines(cfg.input, cfg.partitions)
    ends = starts[1:] + [num_lines + 1]
    parts = [_Part(k, cfg.workers // cfg.partitions + (k < cfg.workers % cfg.partitions), starts[k], ends[k],
                   offsets[k] if offsets else None) for k in range(cfg.partitions)]
    ctx = mp.get_context("spawn")
    events = ctx.Queue()
    procs = [ctx.Process(target=_part_process, args=(cfg, p, events)) for p in parts]
    summary = PreprocessSummary(tokens={k: 0 for k in cfg.json_keys})
    done: set[int] = set()
    try:
        for p in procs:
            p.start()
        with _progress_bar(cfg, None) as bar:
            while len(done) < len(parts):
                try:
                    kind, index, payload = events.get(timeout=1.0)
                except queue.Empty:
                    dead = [i for i, p in enumerate(procs) if i not in done and p.exitcode not in (None, 0)]
                    if dead:
                        raise PreprocessError(f"partition {dead[0]} died (exit code {procs[dead[0]].exitcode})")
                    continue
                if kind == "progress":
                    advance(bar, *payload)
                elif kind == "done":
                    done.add(index)
                    summary.add(payload)
                else:
                    raise PreprocessError(f"partition {index} (lines {parts[index].start_line}-"
                                          f"{parts[index].end_line - 1}) failed:\n{payload}")
        for p in procs:
            p.join()
        for key in cfg.json_keys:
            part_prefixes = [_part_prefix(cfg, key, p) for p in parts]
            merge_datasets(cfg.output_prefix_for(key), part_prefixes)
    finally:
        for p in procs:
            if p.is_alive():
                p.terminate()
            p.join()
        for key in cfg.json_keys:
            for p in parts:
                for ext in (".bin", ".idx"):
                    path = _part_prefix(cfg, key, p) + ext
                    if os.path.exists(path):
                        os.remove(path)
    return summary
