"""Streaming drivers for the MedC-K tools: JSONL in, JSONL out (written whole or not at all, via
:mod:`megapmc.utils.io`), one S2ORC shard per call or many shards on a process pool."""
from __future__ import annotations

import collections
import contextlib
import gzip
import io
import json
import os
import re
from typing import IO, Iterator

from megapmc.data.jsonl import JsonlStats, MalformedLineError, read_jsonl
from megapmc.data.medc_k.books import BookCleanConfig, BookCleaner, BookCleanStats
from megapmc.data.medc_k.s2orc import (S2orcFilterStats, checked_pmc_id, convert_paper, make_document,
                                        paper_id)
from megapmc.data.preprocess import ordered_bounded_map, worker_context
from megapmc.utils.io import atomic_open, write_json_atomic


def _require_files(*paths: str) -> None:
    for path in paths:
        if not os.path.isfile(path):
            raise FileNotFoundError(f"input file {path} does not exist")


@contextlib.contextmanager
def atomic_text_out(path: str) -> Iterator[IO[str]]:
    """A text stream compressed by ``path``'s suffix (.gz, .zst, else plain) that appears at ``path`` only
    when the block finishes; the folder is created. On an error ``path`` keeps what it held."""
    head = os.path.dirname(path)
    if head:
        os.makedirs(head, exist_ok=True)
    with atomic_open(path, "wb") as raw:
        if path.endswith(".gz"):
            # mtime=0: the same input gives the same bytes.
            binary = gzip.GzipFile(fileobj=raw, mode="wb", mtime=0)
        elif path.endswith(".zst"):
            import zstandard

            binary = zstandard.ZstdCompressor().stream_writer(raw, closefd=False)
        else:
            binary = None
        out = io.TextIOWrapper(binary if binary is not None else raw, encoding="utf-8")
        try:
            yield out
        except BaseException:
            out.detach()  # atomic_open removes the temporary; nothing more to flush
            raise
        if binary is None:
            out.flush()
            out.detach()  # leave ``raw`` open: atomic_open closes and renames it
        else:
            out.close()  # ends the gzip member / zstd frame; ``raw`` itself stays open


def filter_s2orc(input_path: str, output_path: str, section_headings: bool = True,
                 strict: bool = False, progress: bool = True) -> S2orcFilterStats:
    """Keep the S2ORC papers with a PubMed Central id; write one ``{"id", "pmc_id", "title", "text"}`` per line."""
    from tqdm import tqdm

    _require_files(input_path)
    stats, jstats = S2orcFilterStats(), JsonlStats()
    with atomic_text_out(output_path) as out:
        for line_no, record in tqdm(read_jsonl(input_path, strict=strict, stats=jstats), unit="papers",
                                    desc="filter_s2orc", disable=not progress):
            doc = convert_paper(record, stats, line_no, section_headings)
            if doc is not None:
                out.write(json.dumps(doc, ensure_ascii=False) + "\n")
    stats.malformed = jstats.malformed
    stats.issues = sorted(stats.issues + jstats.issues)
    return stats


def filter_s2orc_split(metadata_path: str, pdf_parses_path: str, output_path: str, section_headings: bool = True,
                       strict: bool = False, progress: bool = True) -> S2orcFilterStats:
    """The S2ORC 2020 layout: keep the PMC papers of a metadata shard, then join their PDF parses on paper_id.

    Papers come out in the parses' order. A PMC paper whose parse is missing is counted (``no_parse``),
    not written: the corpus is full-text papers.
    """
    from tqdm import tqdm

    _require_files(metadata_path, pdf_parses_path)
    stats, jstats = S2orcFilterStats(), JsonlStats()
    metadata: dict[str, tuple[str, dict]] = {}
    for line_no, record in tqdm(read_jsonl(metadata_path, strict=strict, stats=jstats), unit="papers",
                                desc="s2orc metadata", disable=not progress):
        pmc = checked_pmc_id(record, stats, line_no)
        if pmc is not None and paper_id(record) is not None:
            metadata[paper_id(record)] = (pmc, record)
    stats.malformed, stats.issues = jstats.malformed, sorted(stats.issues + jstats.issues)
    parse_stats = JsonlStats()
    with atomic_text_out(output_path) as out:
        for line_no, parse in tqdm(read_jsonl(pdf_parses_path, strict=strict, stats=parse_stats), unit="parses",
                                   desc="s2orc pdf parses", disable=not progress):
            found = metadata.pop(paper_id(parse) or "", None)
            if found is None:
                continue
            pmc, meta = found
            doc = make_document({"paper_id": paper_id(parse), "metadata": meta, "pdf_parse": parse}, pmc,
                                stats, section_headings, line_no)
            if doc is not None:
                out.write(json.dumps(doc, ensure_ascii=False) + "\n")
    stats.no_parse = len(metadata)
    stats.malformed += parse_stats.malformed
    stats.issues += [(n, f"[line {n} of {pdf_parses_path}] {reason}") for n, reason in parse_stats.issues]
    return stats


STATS_SUFFIX = ".stats.json"
SUMMARY_NAME = "summary.json"


def shard_output_path(input_path: str, output_dir: str, suffix: str = ".jsonl.zst") -> str:
    """``s2orc/part7.jsonl.gz`` -> ``OUT/part7.jsonl.zst`` (compression and JSON suffixes replaced)."""
    name = os.path.basename(input_path)
    for ext in (".gz", ".zst", ".jsonl", ".json"):
        if name.endswith(ext) and len(name) > len(ext):
            name = name[: -len(ext)]
    return os.path.join(output_dir, name + suffix)


def pair_split_shards(metadata_paths: list[str], pdf_parses_paths: list[str]) -> list[tuple[str, str]]:
    """Pair the 2020 release's ``metadata_N`` with ``pdf_parses_N`` by the shard number N."""
    def number(path: str) -> str:
        digits = re.findall(r"\d+", os.path.basename(path))
        if not digits:
            raise ValueError(f"{path}: no shard number in the name to pair metadata with pdf_parses by")
        return digits[-1]

    parses = {number(p): p for p in pdf_parses_paths}
    pairs, unpaired = [], []
    for m in metadata_paths:
        if number(m) in parses:
            pairs.append((m, parses.pop(number(m))))
        else:
            unpaired.append(m)
    unpaired += sorted(parses.values())
    if unpaired:
        raise ValueError(f"no partner shard (same number) for {', '.join(unpaired)}")
    return pairs


def _filter_shard(job: tuple) -> tuple[int, str, S2orcFilterStats | None, str | None]:
    """One shard of a fan-out: ``(index, output, stats, error)``; a broken shard does not stop the others."""
    index, inputs, output, section_headings, strict = job
    try:
        if len(inputs) == 1:
            stats = filter_s2orc(inputs[0], output, section_headings, strict, progress=False)
        else:
            stats = filter_s2orc_split(inputs[0], inputs[1], output, section_headings, strict, progress=False)
        write_json_atomic(output + STATS_SUFFIX, stats.as_dict())
        return index, output, stats, None
    except Exception as e:  # noqa: BLE001 - a corrupt shard (bad gzip/zstd, bad line with --strict) is reported
        return index, output, None, f"{type(e).__name__}: {e}"


def filter_s2orc_shards(shards: list[tuple[str, ...]], output_dir: str, workers: int = 1,
                        section_headings: bool = True, strict: bool = False, suffix: str = ".jsonl.zst",
                        progress: bool = True) -> dict:
    """Filter many shards on ``workers`` processes, each to its own ``OUTPUT_DIR/<shard>SUFFIX``.

    A shard is ``(input,)`` or ``(metadata, pdf_parses)``. Each output appears whole or not at all, with
    its counts beside it (``<output>.stats.json``); a rerun skips the shards whose output and counts exist,
    so an interrupted fan-out resumes. Returns (and writes as ``OUTPUT_DIR/summary.json``) the per-shard
    counts, their total and the shards that failed.
    """
    from tqdm import tqdm

    if workers < 1:
        raise ValueError(f"--workers must be >= 1, got {workers}")
    if not shards:
        raise ValueError("no input shards (does the --input pattern match any file?)")
    outputs = [shard_output_path(s[0], output_dir, suffix) for s in shards]
    clash = [o for o, n in collections.Counter(outputs).items() if n > 1]
    if clash:
        raise ValueError(f"several inputs would write {clash[0]}; give shards with distinct names")
    os.makedirs(output_dir, exist_ok=True)
    results: dict[int, tuple[S2orcFilterStats | None, str | None, bool]] = {}
    jobs = []
    for i, (shard, output) in enumerate(zip(shards, outputs)):
        if os.path.isfile(output) and os.path.isfile(output + STATS_SUFFIX):
            with open(output + STATS_SUFFIX) as f:
                results[i] = (S2orcFilterStats.from_dict(json.load(f)), None, True)
        else:
            jobs.append((i, tuple(shard), output, section_headings, strict))
    pool = worker_context().Pool(min(workers, len(jobs))) if workers > 1 and len(jobs) > 1 else None
    try:
        done = pool.imap_unordered(_filter_shard, jobs) if pool else map(_filter_shard, jobs)
        for index, _, stats, error in tqdm(done, total=len(jobs), unit="shards", desc="filter_s2orc",
                                           disable=not progress):
            results[index] = (stats, error, False)
    finally:
        if pool is not None:
            pool.terminate()
            pool.join()
    total = S2orcFilterStats()
    rows, failed = [], []
    for i, (shard, output) in enumerate(zip(shards, outputs)):
        stats, error, skipped = results[i]
        row = {"input": list(shard), "output": output, "skipped_existing": skipped}
        if error is not None:
            failed.append({**row, "error": error})
            continue
        total.merge(stats)
        rows.append({**row, **stats.counts(), "issues": [list(i) for i in stats.issues[:20]]})
    summary = {"shards": rows, "total": total.counts(), "failed": failed}
    write_json_atomic(os.path.join(output_dir, SUMMARY_NAME), summary)
    return summary


# One cleaner per worker process, built by the pool initializer.
_worker_cleaner: BookCleaner | None = None


def _init_cleaner(cfg: BookCleanConfig | None) -> None:
    global _worker_cleaner
    _worker_cleaner = BookCleaner(cfg)


def _clean_texts(texts: list[str], cleaner: BookCleaner | None = None) -> tuple[list[tuple], BookCleanStats]:
    """Per-book cleaning of a batch: ``(text or None, near-duplicate signature)`` per book, and the
    statistics of this batch alone."""
    cleaner = cleaner or _worker_cleaner
    cleaner.stats = BookCleanStats()
    out = []
    for text in texts:
        cleaned = cleaner.clean_text(text)
        out.append((cleaned, None if cleaned is None else cleaner.signature(cleaned)))
    return out, cleaner.stats


def _book_batches(records, text_key: str, jstats: JsonlStats, strict: bool, path: str,
                  max_books: int = 16, max_chars: int = 16 << 20):
    """Batches of ``(line_no, record)`` with a string ``text_key``; other records are counted and skipped."""
    batch, chars = [], 0
    for line_no, record in records:
        if not isinstance(record.get(text_key), str):
            if strict:
                raise MalformedLineError(f"{path}:{line_no}: missing string key {text_key!r}")
            jstats.add_issue(line_no, f"missing string key {text_key!r}")
            continue
        batch.append((line_no, record))
        chars += len(record[text_key])
        if len(batch) == max_books or chars >= max_chars:
            yield batch
            batch, chars = [], 0
    if batch:
        yield batch


def clean_books(input_path: str, output_path: str, cfg: BookCleanConfig | None = None, text_key: str = "text",
                strict: bool = False, progress: bool = True, workers: int = 1) -> tuple[BookCleanStats, JsonlStats]:
    """Clean every record's ``text_key`` (other fields pass through) on ``workers`` processes.

    Books keep their input order; a book that is empty after cleaning, or an exact or near duplicate of
    an earlier one, is not written. Per-book rules (and the MinHash signatures) run in the workers, the
    cross-book deduplication here, in input order, so the result does not depend on ``workers``.
    """
    from tqdm import tqdm

    if workers < 1:
        raise ValueError(f"--workers must be >= 1, got {workers}")
    _require_files(input_path)
    cleaner, jstats = BookCleaner(cfg), JsonlStats()
    pending: collections.deque = collections.deque()

    def texts_of(batches):
        for batch in batches:
            pending.append(batch)
            yield [record[text_key] for _, record in batch]

    batches = _book_batches(read_jsonl(input_path, strict=strict, stats=jstats), text_key, jstats, strict,
                            input_path)
    pool = worker_context().Pool(workers, _init_cleaner, (cfg,)) if workers > 1 else None
    try:
        if pool is None:
            # Per-book work on a cleaner of its own, as in a worker: each batch's counts are merged below.
            local = BookCleaner(cfg)
            results = (_clean_texts(texts, local) for texts in texts_of(batches))
        else:
            results = ordered_bounded_map(pool, _clean_texts, texts_of(batches), 2 * workers)
        with atomic_text_out(output_path) as out, tqdm(unit="books", desc="clean_books", disable=not progress) as bar:
            for cleaned, batch_stats in results:
                cleaner.stats.merge(batch_stats)
                for (_, record), (text, signature) in zip(pending.popleft(), cleaned):
                    if text is not None and cleaner.accept(text, signature) is not None:
                        out.write(json.dumps({**record, text_key: text}, ensure_ascii=False) + "\n")
                bar.update(len(cleaned))
    finally:
        if pool is not None:
            pool.terminate()
            pool.join()
    return cleaner.stats, jstats
