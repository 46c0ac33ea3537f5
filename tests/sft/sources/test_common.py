import json
import random

from megapmc.sft.sources.common import BottomK, Problems, iter_json_array, iter_json_records


def test_json_array_streaming_across_small_chunks(tmp_path):
    items = [{"i": i, "text": "x" * (i * 7), "n": 12345 + i} for i in range(40)]
    path = tmp_path / "a.json"
    path.write_text(json.dumps(items, indent=1))
    problems = Problems()
    got = list(iter_json_array(path, "t", problems, chunk_chars=16))
    assert [obj for _, obj in got] == items and problems.total == 0
    lines = path.read_text().splitlines()
    for line, obj in got:  # the reported line is where the element starts
        assert lines[line - 1].strip() == "{"
        assert f'"i": {obj["i"]},' in lines[line]


def test_broken_json_array_reports_the_line(tmp_path):
    path = tmp_path / "a.json"
    path.write_text('[\n {"a": 1},\n {"a": 2},\n {"a": \n')
    problems = Problems()
    got = [obj for _, obj in iter_json_records(path, "t", problems)]
    assert got == [{"a": 1}, {"a": 2}]
    assert problems.total == 1 and problems.examples[0].startswith(f"{path}:4")


def test_not_an_array(tmp_path):
    path = tmp_path / "a.json"
    path.write_text('{"a": 1}')
    problems = Problems()
    assert list(iter_json_array(path, "t", problems)) == []
    assert "expected a JSON array" in problems.examples[0]


def test_bottom_k_is_order_independent_and_deduplicates():
    keys = [f"k{i}" for i in range(500)] + ["k3", "k3"]
    a = BottomK(50, seed=3)
    for k in keys:
        a.offer(k, k)
    shuffled = keys[:]
    random.Random(0).shuffle(shuffled)
    b = BottomK(50, seed=3)
    for k in shuffled:
        b.offer(k, k)
    assert len(a) == 50 and sorted(a.values()) == sorted(b.values())
    assert len(set(a.values())) == 50
    c = BottomK(50, seed=4)
    for k in keys:
        c.offer(k, k)
    assert sorted(c.values()) != sorted(a.values())


def test_compressed_inputs(tmp_path):
    import gzip

    items = [{"i": i} for i in range(5)]
    with gzip.open(tmp_path / "a.json.gz", "wt") as f:
        json.dump(items, f)
    with gzip.open(tmp_path / "b.jsonl.gz", "wt") as f:
        f.write("".join(json.dumps(x) + "\n" for x in items))
    for name in ("a.json.gz", "b.jsonl.gz"):
        problems = Problems()
        assert [obj for _, obj in iter_json_records(tmp_path / name, "t", problems)] == items
        assert problems.total == 0
