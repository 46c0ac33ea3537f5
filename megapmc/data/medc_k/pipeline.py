"""Streaming drivers for the MedC-K tools: JSONL in, JSONL out (temporary name, renamed when complete)."""
from __future__ import annotations

import json
import os

from megapmc.data.jsonl import JsonlStats, open_text_out, read_jsonl
from megapmc.data.medc_k.books import BookCleanConfig, BookCleaner, BookCleanStats
from megapmc.data.medc_k.s2orc import S2orcFilterStats, convert_paper


def _temp_name(path: str) -> str:
    # Keep the compression suffix last so open_text_out still picks the codec.
    head, name = os.path.split(path)
    return os.path.join(head, f".tmp-{os.getpid()}-{name}")


def filter_s2orc(input_path: str, output_path: str, section_headings: bool = True,
                 strict: bool = False, progress: bool = True) -> S2orcFilterStats:
    """Keep the S2ORC papers with a PubMed Central id; write one ``{"id", "pmc_id", "title", "text"}`` per line."""
    from tqdm import tqdm

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


def clean_books(input_path: str, output_path: str, cfg: BookCleanConfig | None = None, text_key: str = "text",
                strict: bool = False, progress: bool = True) -> tuple[BookCleanStats, JsonlStats]:
    """Clean every record's ``text_key``; other fields pass through; dropped books are not written."""
    from tqdm import tqdm

    cleaner, jstats = BookCleaner(cfg), JsonlStats()
    tmp = _temp_name(output_path)
    try:
        with open_text_out(tmp) as out:
            for line_no, record in tqdm(read_jsonl(input_path, strict=strict, stats=jstats), unit="books",
                                        desc="clean_books", disable=not progress):
                text = record.get(text_key)
                if not isinstance(text, str):
                    jstats.add_issue(line_no, f"missing string key {text_key!r}")
                    if strict:
                        raise ValueError(f"{input_path}:{line_no}: missing string key {text_key!r}")
                    continue
                cleaned = cleaner.clean(text)
                if cleaned is not None:
                    out.write(json.dumps({**record, text_key: cleaned}, ensure_ascii=False) + "\n")
        os.replace(tmp, output_path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return cleaner.stats, jstats
