"""Test-set contamination: n-gram overlap between training text and the benchmark test items.

Text on both sides is normalised (Unicode NFKC, lower case, every run of non-alphanumerics one space)
and split into words. Each test item contributes the ``n``-grams (13 by default, as GPT-3 and
lm-evaluation-harness's decontamination use) of its question, its options block and, for PubMedQA,
its abstract, each field separately so no n-gram straddles two fields. A field shorter than ``n``
words but at least ``min_short_words`` long is matched as a whole (MedMCQA questions are often short);
shorter ones cannot be checked and are counted as such.

The training side is streamed in chunks of lines from JSON-lines files (``.jsonl``, ``.jsonl.gz``,
``.jsonl.zst``): the text of a record is the field ``text_key`` if given, else every string inside it
(instruction records, conversations). Memory holds the test side and a few chunks of training text
(``CHUNK_CHARS`` each); hashing and lookups are vectorised (about 0.7 M words/s on one busy CPU core),
and chunks are spread over ``workers`` processes.

An item is *contaminated* when at least one of its n-grams occurs in the training text; the report
also gives the share of the item's n-grams found (1.0: the whole question is in the training data).
"""
from __future__ import annotations

import json
import multiprocessing as mp
import re
import unicodedata
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
from tqdm import tqdm

from megapmc.data.jsonl import open_binary
from megapmc.evaluation.tasks import MultipleChoiceItem
from megapmc.utils.io import write_text_atomic


CHUNK_CHARS = 8 << 20  # training text scanned at once: large enough for numpy, small in memory


def normalise_words(text: str) -> list[str]:
    text = unicodedata.normalize("NFKC", text).lower()
    return re.sub(r"[\W_]+", " ", text).split()


def item_fields(item: MultipleChoiceItem) -> list[str]:
    options = " ".join(f"{letter} {text}" for letter, text in zip(item.letters, item.texts))
    return [item.question, options, *item.contexts]


@dataclass
class ItemOverlap:
    task: str
    id: str
    num_ngrams: int
    matched: set[int] = field(default_factory=set)
    first_match: dict | None = None  # {"source": "path:line", "ngram": "..."}

    def to_json(self) -> dict:
        return {"task": self.task, "id": self.id, "ngrams": self.num_ngrams, "matched_ngrams": len(self.matched),
                "coverage": len(self.matched) / self.num_ngrams if self.num_ngrams else 0.0, **(self.first_match or {})}


_PRIME = np.uint64(1099511628211)  # FNV-1a's 64-bit prime: the polynomial hash's multiplier


def word_ids(words: list[str]) -> np.ndarray:
    """One 64-bit id per word (Python's string hash: stable within a process, which is all we need)."""
    return np.array(list(map(hash, words)), dtype=np.int64).view(np.uint64)  # hash() fits int64


def ngram_keys(ids: np.ndarray, length: int) -> np.ndarray:
    """Polynomial hashes of every ``length``-word window of ``ids``, the length mixed in: ``[len - length + 1]``."""
    m = len(ids) - length + 1
    if m <= 0:
        return np.empty(0, dtype=np.uint64)
    with np.errstate(over="ignore"):  # arithmetic modulo 2**64 is the point
        h = ids[:m].copy()
        for j in range(1, length):
            h = h * _PRIME + ids[j:j + m]
        return h * _PRIME + np.uint64(length)


class NgramIndex:
    """The test items' n-gram keys, each mapped to the items that hold it.

    The training side is scanned in chunks of many records: word ids, window hashes and the membership
    test are numpy operations, so Python runs once per word (hashing it) instead of once per n-gram.
    """

    def __init__(self, items_by_task: dict[str, list[MultipleChoiceItem]], n: int = 13, min_short_words: int = 8):
        if n < 1:
            raise ValueError(f"--ngram must be positive, got {n}")
        self.n = n
        self.lengths: set[int] = set()  # n-gram lengths to scan the training text for
        self.index: dict[int, list[ItemOverlap]] = defaultdict(list)
        self.items: dict[str, list[ItemOverlap]] = {}
        self.unchecked: dict[str, list[str]] = {}
        for task, items in items_by_task.items():
            self.items[task], self.unchecked[task] = [], []
            for item in items:
                keys: set[int] = set()
                for text in item_fields(item):
                    ids = word_ids(normalise_words(text))
                    if len(ids) >= n:
                        keys.update(ngram_keys(ids, n).tolist())
                        self.lengths.add(n)
                    elif min_short_words and len(ids) >= min_short_words:
                        keys.update(ngram_keys(ids, len(ids)).tolist())
                        self.lengths.add(len(ids))
                if not keys:
                    self.unchecked[task].append(item.id)
                    continue
                overlap = ItemOverlap(task, item.id, len(keys))
                self.items[task].append(overlap)
                for key in keys:
                    self.index[key].append(overlap)
        self._keys = np.array(sorted(self.index), dtype=np.uint64)

    def find(self, records: list[tuple[str, str]]) -> list[tuple[int, str, str]]:
        """The test n-grams in a chunk of ``(text, source)`` records, in text order, as
        ``(key, source, ngram text)``; no window spans two records. Pure: runs in worker processes."""
        if not len(self._keys):
            return []
        words: list[str] = []
        starts = []
        for text, _ in records:
            starts.append(len(words))
            words.extend(normalise_words(text))
        if not words:
            return []
        ids = word_ids(words)
        record_of = np.repeat(np.arange(len(records)), np.diff(np.append(starts, len(words))))  # [words]
        hits = []
        for length in sorted(self.lengths):
            keys = ngram_keys(ids, length)
            if not len(keys):
                continue
            inside = record_of[:len(keys)] == record_of[length - 1:]  # window within one record
            slot = np.minimum(np.searchsorted(self._keys, keys), len(self._keys) - 1)
            for pos in np.flatnonzero(inside & (self._keys[slot] == keys)).tolist():
                hits.append((pos, int(keys[pos]), records[record_of[pos]][1], " ".join(words[pos:pos + length])))
        hits.sort(key=lambda h: h[0])  # text order, so "first match" means first in the training data
        return [h[1:] for h in hits]

    def record(self, hits: list[tuple[int, str, str]]) -> int:
        """Mark ``find``'s hits on the items; return how many (item, n-gram) pairs were new."""
        found = 0
        for key, source, ngram in hits:
            for overlap in self.index[key]:
                if key not in overlap.matched:
                    found += 1
                    overlap.matched.add(key)
                    if overlap.first_match is None:
                        overlap.first_match = {"source": source, "ngram": ngram}
        return found

    def scan(self, records: list[tuple[str, str]]) -> int:
        """``find`` then ``record`` in this process."""
        return self.record(self.find(records))


def _strings(value) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)


def _record_text(line: bytes, where: str, text_key: str | None) -> str | None:
    """The text of one JSON line (``None`` for a blank line). A line that is not JSON, or lacks
    ``text_key``, raises with its location: a silently skipped line could hide a leak."""
    if not line.strip():
        return None
    try:
        record = json.loads(line)
    except json.JSONDecodeError as e:
        raise ValueError(f"{where}: not valid JSON ({e.msg}); contamination needs JSON lines") from None
    if text_key is not None:
        if not isinstance(record, dict) or not isinstance(record.get(text_key), str):
            raise ValueError(f"{where}: no string field {text_key!r}; pass the right --text-key")
        return record[text_key]
    return "\n".join(_strings(record))


def iter_line_chunks(paths: Iterable[str | Path], show_progress: bool = True
                     ) -> Iterator[tuple[str, int, list[bytes]]]:
    """``(path, first line number, raw lines)`` chunks of about ``CHUNK_CHARS`` bytes, in file order."""
    for path in map(Path, paths):
        if not path.is_file():
            raise FileNotFoundError(f"{path}: training file not found")
        with open_binary(path) as f:
            chunk, size, first = [], 0, 1
            for lineno, line in enumerate(tqdm(f, desc=path.name, unit=" lines", disable=not show_progress), 1):
                chunk.append(line)
                size += len(line)
                if size >= CHUNK_CHARS:
                    yield str(path), first, chunk
                    chunk, size, first = [], 0, lineno + 1
            if chunk:
                yield str(path), first, chunk


@dataclass
class ContaminationReport:
    n: int
    sources: list[str]
    per_task: dict[str, dict]

    def to_json(self) -> dict:
        return {"ngram": self.n, "sources": self.sources, "tasks": self.per_task}

    def markdown(self) -> str:
        lines = [f"{self.n}-gram overlap of the test sets with {', '.join(self.sources)}", "",
                 "| Task | Items checked | Contaminated | Fraction (%) | Too short to check |", "|---|---|---|---|---|"]
        for task, r in self.per_task.items():
            lines.append(f"| {task} | {r['checked']} | {r['contaminated']} | {100 * r['fraction']:.2f} | {r['unchecked']} |")
        for task, r in self.per_task.items():
            for item in r["items"]:
                lines.append(f"- {task} {item['id']}: {item['matched_ngrams']}/{item['ngrams']} n-grams "
                             f"({100 * item['coverage']:.0f}%), first at {item['source']}: \"{item['ngram']}\"")
        return "\n".join(lines) + "\n"


_worker_state: tuple[NgramIndex, str | None] | None = None  # set in each forked worker


def _find_in_chunk(chunk: tuple[str, int, list[bytes]]) -> list[tuple[int, str, str]]:
    index, text_key = _worker_state
    path, first, lines = chunk
    records = []
    for lineno, line in enumerate(lines, first):
        where = f"{path}:{lineno}"
        text = _record_text(line, where, text_key)
        if text is not None:
            records.append((text, where))
    return index.find(records)


def check_contamination(items_by_task: dict[str, list[MultipleChoiceItem]], train_paths: list[str | Path],
                        n: int = 13, text_key: str | None = None, min_short_words: int = 8,
                        show_progress: bool = True, workers: int = 1) -> ContaminationReport:
    """Scan ``train_paths`` for the test items' n-grams on ``workers`` processes; the report is the same
    for any number of workers (chunks are merged in file order)."""
    global _worker_state
    if workers < 1:
        raise ValueError(f"--workers must be at least 1, got {workers}")
    index = NgramIndex(items_by_task, n=n, min_short_words=min_short_words)
    chunks = iter_line_chunks(train_paths, show_progress)
    _worker_state = (index, text_key)
    try:
        if workers == 1:
            for chunk in chunks:
                index.record(_find_in_chunk(chunk))
        else:
            # fork: workers inherit the index and Python's string-hash seed, which word ids rely on.
            with mp.get_context("fork").Pool(workers) as pool:
                for hits in pool.imap(_find_in_chunk, chunks):
                    index.record(hits)
    finally:
        _worker_state = None
    per_task = {}
    for task, overlaps in index.items.items():
        hit = [o for o in overlaps if o.matched]
        per_task[task] = {
            "checked": len(overlaps), "contaminated": len(hit),
            "fraction": len(hit) / len(overlaps) if overlaps else 0.0,
            "unchecked": len(index.unchecked[task]), "unchecked_ids": index.unchecked[task],
            "items": [o.to_json() for o in hit],
        }
    return ContaminationReport(n, [str(p) for p in train_paths], per_task)


def write_contamination(report: ContaminationReport, output_dir: str | Path) -> tuple[Path, Path]:
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    paths = output_dir / "contamination.json", output_dir / "contamination.md"
    for path, text in zip(paths, (json.dumps(report.to_json(), indent=2) + "\n", report.markdown())):
        write_text_atomic(path, text)
    return paths
