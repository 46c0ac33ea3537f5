"""What every MedC-I source shares: the record, the bad-record log, line-numbered readers, seeded choice.

Sources stream their original files and yield ``InstructionRecord``s; a malformed item is logged in
``Problems`` with its file and line and skipped, unless the log is strict, which raises at once.
"""
from __future__ import annotations

import hashlib
import heapq
import io
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator

from megapmc.data.jsonl import iter_lines, open_binary, parse_line

RECORD_FIELDS = ("instruction", "input", "output", "source", "id")


@dataclass
class InstructionRecord:
    """One instruction-tuning example; ``instruction_pool`` names the pool its instruction was drawn from
    (kept so the drawing can be redone per epoch)."""

    instruction: str
    input: str
    output: str
    source: str
    id: str
    instruction_pool: str | None = None

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        if d["instruction_pool"] is None:
            del d["instruction_pool"]
        return d


class BadRecordError(ValueError):
    """A malformed input item in ``--strict`` mode."""


@dataclass
class Problems:
    """Bad input items, counted per source, each with ``file:line`` and why; fatal when ``strict``."""

    strict: bool = False
    max_listed: int = 20
    counts: dict[str, int] = field(default_factory=dict)
    examples: list[str] = field(default_factory=list)

    def report(self, source: str, path: str | Path, line: int | None, reason: str) -> None:
        where = f"{path}:{line}" if line is not None else str(path)
        message = f"{where}: {reason}"
        if self.strict:
            raise BadRecordError(f"{message} (--strict stops at the first bad record; drop it to skip them)")
        self.counts[source] = self.counts.get(source, 0) + 1
        if len(self.examples) < self.max_listed:
            self.examples.append(message)

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def summary(self) -> str:
        if not self.total:
            return "no bad records"
        lines = [f"{self.total} bad records skipped ({', '.join(f'{k}: {v}' for k, v in self.counts.items())})"]
        lines += [f"  {m}" for m in self.examples]
        if self.total > len(self.examples):
            lines.append(f"  ... and {self.total - len(self.examples)} more")
        return "\n".join(lines)


def iter_jsonl(path: str | Path, source: str, problems: Problems) -> Iterator[tuple[int, Any]]:
    """``(line_number, object)`` per JSON-object line (.jsonl, .gz, .zst); bad lines go to ``problems``."""
    for line_no, line in iter_lines(path):
        record, reason = parse_line(line)
        if record is not None:
            yield line_no, record
        elif reason is not None:
            problems.report(source, path, line_no, reason)


def iter_json_array(path: str | Path, source: str, problems: Problems,
                    chunk_chars: int = 1 << 20) -> Iterator[tuple[int, Any]]:
    """``(line_number, element)`` of a top-level JSON array, read in chunks (released files are large).

    The line number is where the element starts. A broken element ends the file: the rest of an array
    cannot be resynchronised reliably, so it is reported once with its line.
    """
    decoder = json.JSONDecoder()
    with io.TextIOWrapper(open_binary(path), encoding="utf-8") as f:
        buf, pos, line, eof = "", 0, 1, False

        def fill() -> bool:
            nonlocal buf, pos, eof
            chunk = f.read(chunk_chars)
            if not chunk:
                eof = True
                return False
            buf, pos = buf[pos:] + chunk, 0
            return True

        def skip_ws() -> None:
            nonlocal pos, line
            while True:
                while pos < len(buf) and buf[pos] in " \t\r\n":
                    line += buf[pos] == "\n"
                    pos += 1
                if pos < len(buf) or not fill():
                    return

        skip_ws()
        if pos >= len(buf) or buf[pos] != "[":
            problems.report(source, path, line, "expected a JSON array of records ('[' at the start)")
            return
        pos += 1
        first = True
        while True:
            skip_ws()
            if pos >= len(buf):
                problems.report(source, path, line, "the JSON array is not closed (truncated file?)")
                return
            if buf[pos] == "]":
                return
            if not first:
                if buf[pos] != ",":
                    problems.report(source, path, line, f"expected ',' between array elements, got {buf[pos]!r}")
                    return
                pos += 1
                skip_ws()
            first = False
            while True:
                try:
                    obj, end = decoder.raw_decode(buf, pos)
                    if end < len(buf) or eof or not fill():  # a number at the chunk's end may go on
                        break
                    continue
                except json.JSONDecodeError as e:
                    if not eof and fill():  # the element may continue past the chunk
                        continue
                    error_line = line + buf.count("\n", pos, e.pos)
                    problems.report(source, path, line, f"invalid JSON in this element ({e.msg}, line {error_line})")
                    return
            start_line = line
            line += buf.count("\n", pos, end)
            pos = end
            yield start_line, obj


def iter_json_records(path: str | Path, source: str, problems: Problems) -> Iterator[tuple[int, Any]]:
    """A JSON array file or JSON lines, told apart by the first non-blank character."""
    with open_binary(path) as f:
        head = f.read(4096).lstrip()
    if head.startswith(b"["):
        return iter_json_array(path, source, problems)
    return iter_jsonl(path, source, problems)


def require_str(item: Any, key: str, *, allow_empty: bool = False) -> str:
    """``item[key]`` as a string, or a ``ValueError`` whose text says what is wrong."""
    if not isinstance(item, dict):
        raise ValueError(f"expected a JSON object, got {type(item).__name__}")
    if key not in item:
        raise ValueError(f"missing key {key!r}")
    value = item[key]
    if not isinstance(value, str):
        raise ValueError(f"{key!r} is {type(value).__name__}, expected a string")
    if not allow_empty and not value.strip():
        raise ValueError(f"{key!r} is empty")
    return value


def iter_instruction_items(path: Path, source: str, problems: Problems
                           ) -> Iterator[tuple[int, Any, str, str, str]]:
    """``(index, item, instruction, input, output)`` for every Alpaca-style item (``instruction``,
    optional ``input``, ``output``) of a JSON array or JSON-lines file; a bad item is reported with its
    line and skipped. ``index`` counts every item, bad ones included, so ids stay stable."""
    for index, (line, item) in enumerate(iter_json_records(path, source, problems)):
        try:
            instruction = require_str(item, "instruction")
            input_text = require_str(item, "input", allow_empty=True) if "input" in item else ""
            output = require_str(item, "output")
        except ValueError as e:
            problems.report(source, path, line, str(e))
            continue
        yield index, item, instruction, input_text, output


def stable_hash(seed: int, *parts: object) -> int:
    """A 64-bit hash of ``seed`` and ``parts`` that is the same in every process and Python run."""
    h = hashlib.blake2b(repr((seed, *parts)).encode("utf-8"), digest_size=8)
    return int.from_bytes(h.digest(), "little")


def seeded_choice(options: list[str], seed: int, key: object) -> str:
    """One of ``options`` chosen by ``(seed, key)`` alone, so it does not depend on reading order."""
    return options[stable_hash(seed, key) % len(options)]


class BottomK:
    """A seeded sample of at most ``k`` distinct keys, fed one ``offer(key, value)`` at a time.

    Keeps the ``k`` smallest ``stable_hash(seed, key)``: the same sample whatever the input order, in
    memory proportional to ``k`` (for gigabyte files). A repeated key is kept once. ``values()`` come
    back in the order they were first offered.
    """

    def __init__(self, k: int, seed: int):
        if k < 0:
            raise ValueError(f"sample size must be >= 0, got {k}")
        self.k, self.seed = k, seed
        self._heap: list[tuple[int, int, object, Any]] = []  # (-hash, order, key, value): max-heap on hash
        self._keys: set = set()
        self._order = 0
        self.offered = 0

    def offer(self, key: object, value: Any) -> None:
        self.offered += 1
        if self.k == 0 or key in self._keys:
            return
        h = stable_hash(self.seed, key)
        entry = (-h, self._order, key, value)
        self._order += 1
        if len(self._heap) < self.k:
            heapq.heappush(self._heap, entry)
        elif h < -self._heap[0][0]:
            self._keys.discard(heapq.heapreplace(self._heap, entry)[2])
        else:
            return
        self._keys.add(key)

    def values(self) -> list[Any]:
        return [entry[3] for entry in sorted(self._heap, key=lambda e: e[1])]

    def __len__(self) -> int:
        return len(self._heap)
