"""Streaming JSONL reading (.jsonl, .jsonl.gz, .jsonl.zst) in constant memory, with malformed-line accounting.

Lines are numbered from 1 and every problem is kept with its line number, so that a bad record in a
100 GB file can be found: ``read_jsonl(path, stats=stats)`` yields ``(line_number, record)`` for the
good lines and records the others in ``stats``; with ``strict=True`` the first bad line raises
:class:`MalformedLineError` naming the file and line.
"""
from __future__ import annotations

import gzip
import io
import json
import os
from dataclasses import dataclass, field
from typing import BinaryIO, Iterator

_READ_BUFFER = 1 << 20


class MalformedLineError(ValueError):
    """A line that is not a JSON object (or lacks a required field) where that is fatal."""


def open_binary(path: str | os.PathLike) -> BinaryIO:
    """Open ``path`` for reading decompressed bytes, by its suffix: .gz (gzip), .zst (zstandard), else plain."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"input file {path} does not exist")
    if path.endswith(".gz"):
        return gzip.open(path, "rb")
    if path.endswith(".zst"):
        import zstandard

        raw = open(path, "rb")
        reader = zstandard.ZstdDecompressor().stream_reader(raw, read_across_frames=True, closefd=True)
        return io.BufferedReader(reader, buffer_size=_READ_BUFFER)
    return open(path, "rb", buffering=_READ_BUFFER)


def open_text_out(path: str | os.PathLike):
    """Open ``path`` for writing text, compressed by its suffix like :func:`open_binary` reads it."""
    path = os.fspath(path)
    if path.endswith(".gz"):
        return gzip.open(path, "wt", encoding="utf-8")
    if path.endswith(".zst"):
        import zstandard

        raw = open(path, "wb")
        return io.TextIOWrapper(zstandard.ZstdCompressor().stream_writer(raw, closefd=True), encoding="utf-8")
    return open(path, "w", encoding="utf-8")


@dataclass
class JsonlStats:
    """Counts for one pass over a JSONL stream; ``issues`` keeps the first ``max_issues`` problems."""

    lines: int = 0
    records: int = 0
    blank: int = 0
    malformed: int = 0
    issues: list[tuple[int, str]] = field(default_factory=list)
    max_issues: int = 1000

    def add_issue(self, line_number: int, reason: str) -> None:
        self.malformed += 1
        if len(self.issues) < self.max_issues:
            self.issues.append((line_number, reason))

    def merge(self, other: "JsonlStats") -> None:
        self.lines += other.lines
        self.records += other.records
        self.blank += other.blank
        self.malformed += other.malformed
        room = self.max_issues - len(self.issues)
        self.issues.extend(other.issues[:max(room, 0)])

    def describe_issues(self, path: str, limit: int = 20) -> str:
        """Human-readable list of the first ``limit`` problems, ``path:line: reason`` each."""
        lines = [f"  {path}:{n}: {reason}" for n, reason in self.issues[:limit]]
        more = self.malformed - min(limit, len(self.issues))
        if more > 0:
            lines.append(f"  ... and {more} more")
        return "\n".join(lines)


def iter_lines(path: str | os.PathLike, start_line: int = 1, end_line: int | None = None,
               start_offset: int | None = None) -> Iterator[tuple[int, bytes]]:
    """Yield ``(line_number, raw_line)`` for lines ``[start_line, end_line)`` (1-based; end ``None``: to EOF).

    ``start_offset``, the byte offset of ``start_line`` in an uncompressed file, lets a reader seek there
    instead of reading the lines before it.
    """
    with open_binary(path) as f:
        line_no = 1
        if start_offset is not None and start_line > 1:
            f.seek(start_offset)
            line_no = start_line
        for line in f:
            if end_line is not None and line_no >= end_line:
                return
            if line_no >= start_line:
                yield line_no, line
            line_no += 1


def parse_line(line: bytes) -> tuple[dict | None, str | None]:
    """``(record, None)`` for a JSON object line, ``(None, reason)`` otherwise; a blank line is ``(None, None)``."""
    if not line.strip():
        return None, None
    try:
        record = json.loads(line)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        return None, f"invalid JSON ({e})"
    if not isinstance(record, dict):
        return None, f"expected a JSON object, found {type(record).__name__}"
    return record, None


def read_jsonl(path: str | os.PathLike, strict: bool = False,
               stats: JsonlStats | None = None) -> Iterator[tuple[int, dict]]:
    """Yield ``(line_number, record)`` for each JSON-object line of ``path``; blank lines are skipped.

    Malformed lines are counted in ``stats`` with their line numbers and skipped, or, with ``strict``,
    raise :class:`MalformedLineError`.
    """
    stats = stats if stats is not None else JsonlStats()
    for line_no, line in iter_lines(path):
        stats.lines += 1
        record, reason = parse_line(line)
        if record is not None:
            stats.records += 1
            yield line_no, record
        elif reason is None:
            stats.blank += 1
        elif strict:
            raise MalformedLineError(f"{os.fspath(path)}:{line_no}: {reason}")
        else:
            stats.add_issue(line_no, reason)


def count_lines(path: str | os.PathLike, num_parts: int = 1) -> tuple[int, list[int], list[int] | None]:
    """Count the lines of ``path`` and split them into ``num_parts`` contiguous, nearly equal ranges.

    Returns ``(num_lines, start_lines, start_offsets)``: the first line (1-based) of each part and, for an
    uncompressed file, its byte offset (``None`` for compressed input, which cannot seek).
    """
    plain = not os.fspath(path).endswith((".gz", ".zst"))
    # First pass: count newlines in large blocks (memchr speed); a last line without "\n" counts too.
    total, last = 0, b"\n"
    with open_binary(path) as f:
        while block := f.read(_READ_BUFFER * 8):
            total += block.count(b"\n")
            last = block[-1:]
    if last != b"\n":
        total += 1
    starts = [1 + (total * k) // num_parts for k in range(num_parts)]
    return total, starts, (_line_offsets(path, starts) if plain else None)


def _line_offsets(path: str | os.PathLike, lines: list[int]) -> list[int]:
    """Byte offsets where the (sorted, 1-based) ``lines`` of an uncompressed file start."""
    offsets: list[int] = []
    newlines_before, base = 0, 0
    with open(path, "rb") as f:
        while len(offsets) < len(lines) and (block := f.read(_READ_BUFFER * 8)):
            n = block.count(b"\n")
            # Line L starts right after the (L-1)-th newline.
            while len(offsets) < len(lines) and lines[len(offsets)] - 1 <= newlines_before + n:
                pos = -1
                for _ in range(lines[len(offsets)] - 1 - newlines_before):
                    pos = block.find(b"\n", pos + 1)
                offsets.append(base + pos + 1)
            newlines_before += n
            base += len(block)
    return offsets + [base] * (len(lines) - len(offsets))  # lines past the end start at EOF
