import json
import os

import pytest

from megapmc.utils import io


def test_json_round_trip_and_no_temp_left(tmp_path):
    path = tmp_path / "a.json"
    io.write_json_atomic(path, {"k": "é"}, durable=True)
    assert json.loads(path.read_text(encoding="utf-8")) == {"k": "é"}
    assert "é" in path.read_text(encoding="utf-8")  # non-ASCII kept as text
    assert os.listdir(tmp_path) == ["a.json"]


def test_failed_write_keeps_the_old_file(tmp_path):
    path = tmp_path / "a.txt"
    io.write_text_atomic(path, "old")
    with pytest.raises(RuntimeError):
        with io.atomic_open(path, "w") as f:
            f.write("half")
            raise RuntimeError("killed mid-write")
    assert path.read_text() == "old"
    assert os.listdir(tmp_path) == ["a.txt"]


def test_bytes_and_replace(tmp_path):
    path = tmp_path / "b.bin"
    io.write_bytes_atomic(path, b"\x00\x01")
    assert path.read_bytes() == b"\x00\x01"
    tmp = io.temp_path(path)
    with open(tmp, "wb") as f:
        f.write(b"new")
    io.replace(tmp, path, durable=True)
    assert path.read_bytes() == b"new" and not os.path.exists(tmp)


def test_read_mode_is_refused(tmp_path):
    with pytest.raises(ValueError, match="not a write mode"):
        with io.atomic_open(tmp_path / "x", "r"):
            pass
