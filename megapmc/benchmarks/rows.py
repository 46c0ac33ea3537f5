"""Records of a benchmark file, whatever its container: JSON lines, one JSON document, or parquet.

Every container problem that makes a file unusable is a :class:`BenchmarkFileError` naming the file:
missing, empty, not UTF-8, not JSON. Per-record problems (a line that is not JSON, not an object) are
returned with their location, for the reader to count or, under ``strict``, to stop at.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Callable, Iterator, Union

from megapmc.benchmarks.records import BenchmarkFileError

# (location, record) for a usable record; (location, reason) when the record itself is broken.
Row = tuple[str, Union[dict, str]]


def check_file(path: str | Path) -> Path:
    """``path`` as a ``Path`` if it is a non-empty file, else an error naming it."""
    path = Path(path)
    if not path.is_file():
        raise BenchmarkFileError(f"{path}: not found")
    if path.stat().st_size == 0:
        raise BenchmarkFileError(f"{path}: the file is empty; download it again")
    return path


def read_text(path: str | Path) -> str:
    path = check_file(path)
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as e:
        raise BenchmarkFileError(f"{path}: not UTF-8 (byte {e.start}: {e.reason}); the benchmark files are "
                                 f"UTF-8, re-download or convert with iconv") from None
    if not text.strip():
        raise BenchmarkFileError(f"{path}: the file holds only whitespace; download it again")
    return text.lstrip("\ufeff")  # a BOM left by an editor is not part of the first record


def read_json_document(path: str | Path):
    """A whole-file JSON document (``ori_pqal.json``, ``test_ground_truth.json``)."""
    text = read_text(path)
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise BenchmarkFileError(f"{path}:{e.lineno}: not valid JSON ({e.msg}); re-download the file") from None


def is_parquet(path: Path) -> bool:
    return path.suffix == ".parquet"


def read_rows(path: str | Path) -> Iterator[Row]:
    """Yield the records of a JSON-lines file (``path:line``), a JSON array (``path:[index]``) or a
    parquet file (``path:row N``, 1-based). Nested parquet structs arrive as dicts and lists."""
    path = check_file(path)
    if is_parquet(path):
        yield from _parquet_rows(path)
        return
    text = read_text(path)
    if text.lstrip().startswith("["):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise BenchmarkFileError(f"{path}:{e.lineno}: not valid JSON ({e.msg})") from None
        for i, rec in enumerate(data):
            yield (f"{path}:[{i}]", rec if isinstance(rec, dict) else "not a JSON object")
        return
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        where = f"{path}:{lineno}"
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as e:
            yield where, f"not valid JSON ({e.msg})"
            continue
        yield where, rec if isinstance(rec, dict) else "not a JSON object"


def read_rows_with_layout(path: str | Path, detect: Callable[[dict | None], str | None],
                          expected: str) -> tuple[list[Row], str]:
    """The rows of ``path`` and the layout ``detect`` recognises in its first usable record, read once;
    if it recognises none, an error naming the file and ``expected`` (what such a file holds)."""
    rows = list(read_rows(path))  # raises for a missing, empty or non-UTF-8 file
    layout = detect(next((rec for _, rec in rows if isinstance(rec, dict)), None))
    if layout is None:
        raise BenchmarkFileError(f"{path}: not a {expected}")
    return rows, layout

def _parquet_rows(path: Path) -> Iterator[Row]:
    try:
        import pyarrow.parquet as pq
    except ImportError:  # pragma: no cover - pyarrow is an install requirement
        raise BenchmarkFileError(f"{path}: reading parquet needs pyarrow (pip install pyarrow)") from None
    try:
        table = pq.read_table(path)
    except Exception as e:  # pyarrow raises ArrowInvalid/OSError subclasses for a corrupt file
        raise BenchmarkFileError(f"{path}: not a readable parquet file ({e})") from None
    for i, rec in enumerate(table.to_pylist(), 1):
        yield f"{path}:row {i}", rec


def first_record(path: Path) -> dict | None:
    """The first record of a row file, for recognising its layout; None if it has no usable one."""
    if is_parquet(path):
        import pyarrow.parquet as pq

        try:
            names = pq.read_schema(path).names
        except Exception:
            return None
        return {name: None for name in names}
    try:
        with open(path, "rb") as f:
            for raw in f:
                if raw.strip():
                    rec = json.loads(raw.decode("utf-8").lstrip("\ufeff"))
                    return rec if isinstance(rec, dict) else None
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None
    return None
