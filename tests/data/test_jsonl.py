"""Streaming JSONL reader: compression formats, line numbers, malformed lines, line-range splitting."""
import gzip
import json

import pytest
import zstandard

from megapmc.data.jsonl import JsonlStats, MalformedLineError, count_lines, iter_lines, read_jsonl

LINES = [
    json.dumps({"text": "first"}),
    "{not json",
    "",
    json.dumps([1, 2]),
    json.dumps({"text": "fifth", "n": 5}),
    b"\xff\xfe".decode("latin-1"),
    json.dumps({"text": "seventh"}),
]


def write(path, lines, trailing_newline=True):
    data = ("\n".join(lines) + ("\n" if trailing_newline else "")).encode("utf-8")
    if str(path).endswith(".gz"):
        data = gzip.compress(data)
    elif str(path).endswith(".zst"):
        data = zstandard.ZstdCompressor().compress(data)
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("suffix", [".jsonl", ".jsonl.gz", ".jsonl.zst"])
def test_records_and_issues_with_line_numbers(tmp_path, suffix):
    path = write(tmp_path / f"in{suffix}", LINES)
    stats = JsonlStats()
    got = list(read_jsonl(path, stats=stats))
    assert [(n, r["text"]) for n, r in got] == [(1, "first"), (5, "fifth"), (7, "seventh")]
    assert (stats.lines, stats.records, stats.blank, stats.malformed) == (7, 3, 1, 3)
    assert [n for n, _ in stats.issues] == [2, 4, 6]
    assert "expected a JSON object, found list" in stats.issues[1][1]
    assert f"in{suffix}:2: invalid JSON" in stats.describe_issues(str(path))


def test_strict_names_file_and_line(tmp_path):
    path = write(tmp_path / "in.jsonl", LINES)
    with pytest.raises(MalformedLineError, match=r"in\.jsonl:2: invalid JSON"):
        list(read_jsonl(path, strict=True))


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.jsonl"):
        list(read_jsonl(tmp_path / "nope.jsonl"))


@pytest.mark.parametrize("suffix", [".jsonl", ".jsonl.gz", ".jsonl.zst"])
@pytest.mark.parametrize("parts", [1, 2, 3, 7, 25])
@pytest.mark.parametrize("trailing", [True, False])
def test_line_ranges_cover_the_file_once_in_order(tmp_path, suffix, parts, trailing):
    lines = [json.dumps({"i": i, "pad": "x" * (i % 13)}) for i in range(20)]
    path = write(tmp_path / f"in{suffix}", lines, trailing_newline=trailing)
    total, starts, offsets = count_lines(path, parts)
    assert total == 20 and len(starts) == parts and starts[0] == 1
    assert (offsets is None) == (suffix != ".jsonl")
    ends = starts[1:] + [total + 1]
    seen = []
    for k in range(parts):
        off = offsets[k] if offsets else None
        seen += [(n, json.loads(line)["i"]) for n, line in iter_lines(path, starts[k], ends[k], off)]
    assert seen == [(i + 1, i) for i in range(20)]
