"""Streaming drivers for the MedC-K tools: JSONL in, JSONL out (temporary name, renamed when complete)."""
from __future__ import annotations

import collections
import json
import os

from megapmc.data.jsonl import JsonlStats, MalformedLineError, open_text_out, read_jsonl
from megapmc.data.medc_k.books import BookCleanConfig, BookCleaner, BookCleanStats
from megapmc.data.medc_k.s2orc import (S2orcFilterStats, checked_pmc_id, convert_paper, make_document,
                                        paper_id)
from megapmc.data.preprocess import ordered_bounded_map, worker_context


def _require_files(*paths: str) -> None:
    for path in paths:
        if not os.path.isfile(path):
            raise FileNotFoundError(f"input file {path} does not exist")


def _temp_name(path: str) -> str:
    """A temporary name beside ``path`` (whose folder is created), renamed into place when complete."""
    # Keep the compression suffix last so open_text_out still picks the codec.
    head, name = os.path.split(path)
    if head:
        os.makedirs(head, exist_ok=True)
    return os.path.join(head, f".tmp-{os.getpid()}-{name}")


def filter_s2orc(input_path: str, output_path: str, section_headings: bool = True,
                 strict: bool = False, progress: bool = True) -> S2orcFilterStats:
    """Keep the S2ORC papers with a PubMed Central id; write one ``{"id", "pmc_id", "title", "text"}`` per line."""
    from tqdm import tqdm

    _require_files(input_path)
    stats, jstats = S2orcFilterStats(), JsonlStats()
    tmp = _temp_name(output_path)
    try:
        with open_text_out(tmp) as out:
            for line_no, record in tqdm(read_jsonl(input_path, strict=strict, stats=jstats), unit="papers",
                                        desc="filter_s2orc", disable=not progress):
                doc = convert_paper(record, stats, line_no, section_headings)
                if doc is not None:
                    out.write(json.dumps(doc, ensure_ascii=False) + "\n")
        os.replace(tmp, output_path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
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
    tmp = _temp_name(output_path)
    try:
        with open_text_out(tmp) as out:
            for _, parse in tqdm(read_jsonl(pdf_parses_path, strict=strict, stats=parse_stats), unit="parses",
                                 desc="s2orc pdf parses", disable=not progress):
                found = metadata.pop(paper_id(parse) or "", None)
                if found is None:
                    continue
                pmc, meta = found
                doc = make_document({"paper_id": paper_id(parse), "metadata": meta, "pdf_parse": parse}, pmc,
                                    stats, section_headings)
                if doc is not None:
                    out.write(json.dumps(doc, ensure_ascii=False) + "\n")
        os.replace(tmp, output_path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    stats.no_parse = len(metadata)
    stats.malformed += parse_stats.malformed
    stats.issues += [(n, f"[line {n} of {pdf_parses_path}] {reason}") for n, reason in parse_stats.issues]
    return stats


# One cleaner per worker process, built by the pool initializer.
_worker_cleaner: BookCleaner | None = None


def _init_cleaner(cfg: BookCleanConfig | None) -> None:
    global _worker_cleaner
    _worker_cleaner = BookCleaner(cfg)


def _clean_texts(texts: list[str], cleaner: BookCleaner | None = None) -> tuple[list[str | None], BookCleanStats]:
    """Per-book cleaning of a batch; returns the texts and the statistics of this batch alone."""
    cleaner = cleaner or _worker_cleaner
    cleaner.stats = BookCleanStats()
    return [cleaner.clean_text(t) for t in texts], cleaner.stats


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

    Books keep their input order; a book that is empty after cleaning, or an exact duplicate of an earlier
    one, is not written. Per-book rules run in the workers, the cross-book deduplication here.
    """
    from tqdm import tqdm

    if workers < 1:
        raise ValueError(f"--workers must be >= 1, got {workers}")
    _require_files(input_path)
    cleaner, jstats = BookCleaner(cfg), JsonlStats()
    tmp = _temp_name(output_path)
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
            results = (_clean_texts(texts, cleaner) for texts in texts_of(batches))
        else:
            results = ordered_bounded_map(pool, _clean_texts, texts_of(batches), 2 * workers)
        with open_text_out(tmp) as out, tqdm(unit="books", desc="clean_books", disable=not progress) as bar:
            for cleaned, batch_stats in results:
                if pool is not None:
                    cleaner.stats.merge(batch_stats)
                for (_, record), text in zip(pending.popleft(), cleaned):
                    if text is not None and cleaner.accept(text) is not None:
                        out.write(json.dumps({**record, text_key: text}, ensure_ascii=False) + "\n")
                bar.update(len(cleaned))
        os.replace(tmp, output_path)
    finally:
        if pool is not None:
            pool.terminate()
            pool.join()
        if os.path.exists(tmp):
            os.remove(tmp)
    return cleaner.stats, jstats
