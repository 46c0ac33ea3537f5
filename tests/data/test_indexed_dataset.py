"""The Megatron mmap indexed dataset: layout, round trips, merge, and damaged files."""
import os
import pickle
import struct

import numpy as np
import pytest

from megapmc import _C
from megapmc.data.indexed_dataset import (
    IndexedDataset,
    IndexedDatasetBuilder,
    IndexedDatasetError,
    best_dtype,
    merge_datasets,
)

# Megatron's layout, written down independently of the code under test.
MAGIC = b"MMIDIDX\x00\x00"
CODES = {np.uint8: 1, np.int8: 2, np.int16: 3, np.int32: 4, np.int64: 5, np.float64: 6, np.float32: 7, np.uint16: 8}


def read_idx_reference(path):
    """Parse an .idx file field by field with struct, as Megatron documents it."""
    raw = open(path, "rb").read()
    assert raw[:9] == MAGIC
    (version,) = struct.unpack_from("<Q", raw, 9)
    (code,) = struct.unpack_from("<B", raw, 17)
    seq_count, doc_count = struct.unpack_from("<QQ", raw, 18)
    off = 34
    lengths = list(struct.unpack_from(f"<{seq_count}i", raw, off))
    off += 4 * seq_count
    pointers = list(struct.unpack_from(f"<{seq_count}q", raw, off))
    off += 8 * seq_count
    documents = list(struct.unpack_from(f"<{doc_count}q", raw, off))
    off += 8 * doc_count
    assert off == len(raw), "trailing bytes after the document indices"
    return dict(version=version, code=code, lengths=lengths, pointers=pointers, documents=documents)


def write_idx_reference(path, code, itemsize, lengths, documents):
    """Write an .idx the way Megatron's _IndexWriter does."""
    pointers, p = [], 0
    for n in lengths:
        pointers.append(p)
        p += n * itemsize
    with open(path, "wb") as f:
        f.write(MAGIC + struct.pack("<Q", 1) + struct.pack("<B", code))
        f.write(struct.pack("<QQ", len(lengths), len(documents)))
        f.write(struct.pack(f"<{len(lengths)}i", *lengths))
        f.write(struct.pack(f"<{len(pointers)}q", *pointers))
        f.write(struct.pack(f"<{len(documents)}q", *documents))


def random_docs(rng, n, vocab, max_len=50, dtype=np.uint16):
    return [rng.integers(0, vocab, size=rng.integers(1, max_len), dtype=np.int64).astype(dtype) for _ in range(n)]


def build(prefix, docs, dtype=np.uint16):
    with IndexedDatasetBuilder(prefix, dtype=dtype) as b:
        for d in docs:
            b.add_document(d)
        b.finalize()
    return IndexedDataset(prefix)


@pytest.fixture
def small(tmp_path):
    """A dataset with two one-sequence documents and one two-sequence document, plus its documents."""
    prefix = str(tmp_path / "small")
    b = IndexedDatasetBuilder(prefix, dtype=np.uint16)
    b.add_document(np.array([5, 6, 7], dtype=np.uint16))
    b.add_item(np.array([8, 9], dtype=np.uint16))
    b.add_item(np.array([10], dtype=np.uint16))
    b.end_document()
    b.add_documents(np.array([1, 2, 3, 4], dtype=np.uint16), np.array([1, 3]))
    b.finalize()
    return prefix


def test_idx_layout_field_by_field(small):
    ref = read_idx_reference(small + ".idx")
    assert ref["version"] == 1
    assert ref["code"] == 8  # uint16
    assert ref["lengths"] == [3, 2, 1, 1, 3]
    assert ref["pointers"] == [0, 6, 10, 12, 14]
    assert ref["documents"] == [0, 1, 3, 4, 5]
    assert os.path.getsize(small + ".bin") == 10 * 2
    assert np.fromfile(small + ".bin", dtype="<u2").tolist() == [5, 6, 7, 8, 9, 10, 1, 2, 3, 4]


def test_reader_views(small):
    ds = IndexedDataset(small)
    assert len(ds) == 5 and ds.num_documents == 4 and ds.num_tokens == 10
    assert ds.dtype == np.uint16
    assert [x.tolist() for x in ds[:]] == [[5, 6, 7], [8, 9], [10], [1], [2, 3, 4]]
    assert ds[-1].tolist() == [2, 3, 4]
    assert ds.get(0, offset=1).tolist() == [6, 7]
    assert ds.get(4, offset=1, length=1).tolist() == [3]
    assert ds.sequence_lengths.tolist() == [3, 2, 1, 1, 3]
    assert ds.document_indices.tolist() == [0, 1, 3, 4, 5]
    assert np.shares_memory(ds[1], ds.tokens), "items must be views of the memory map, not copies"
    with pytest.raises(IndexError):
        ds[5]
    with pytest.raises(IndexError):
        ds.get(0, offset=2, length=2)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int32, np.int64])
def test_round_trip_dtypes(tmp_path, dtype):
    rng = np.random.default_rng(0)
    vocab = 200 if dtype == np.uint8 else 60000
    docs = random_docs(rng, 40, vocab, dtype=dtype)
    ds = build(str(tmp_path / "d"), docs, dtype=dtype)
    assert ds.dtype == dtype
    assert read_idx_reference(str(tmp_path / "d.idx"))["code"] == CODES[dtype]
    assert len(ds) == len(docs)
    for got, want in zip(ds, docs):
        np.testing.assert_array_equal(got, want)


def test_reads_megatron_written_files(tmp_path):
    """A pair written by the reference (Megatron's layout) is read back exactly."""
    prefix = str(tmp_path / "meg")
    seqs = [np.array(s, dtype=np.int32) for s in ([1, 2], [3], [4, 5, 6], [70000])]
    np.concatenate(seqs).tofile(prefix + ".bin")
    write_idx_reference(prefix + ".idx", 4, 4, [len(s) for s in seqs], [0, 2, 3, 4])
    ds = IndexedDataset(prefix)
    assert ds.dtype == np.int32
    assert [x.tolist() for x in ds] == [s.tolist() for s in seqs]
    assert ds.document_indices.tolist() == [0, 2, 3, 4]


def test_merge_concatenates_in_order(tmp_path):
    rng = np.random.default_rng(1)
    parts = [random_docs(rng, n, 32000) for n in (7, 1, 13)]
    prefixes = [str(tmp_path / f"part{i}") for i in range(3)]
    for prefix, docs in zip(prefixes, parts):
        build(prefix, docs)
    merged = merge_datasets(str(tmp_path / "merged"), prefixes)
    flat = [d for docs in parts for d in docs]
    assert len(merged) == len(flat) == merged.num_documents
    for got, want in zip(merged, flat):
        np.testing.assert_array_equal(got, want)
    ref = read_idx_reference(str(tmp_path / "merged.idx"))
    assert ref["documents"] == list(range(len(flat) + 1))
    assert ref["pointers"] == np.concatenate([[0], np.cumsum([2 * len(d) for d in flat])[:-1]]).tolist()


def test_merge_keeps_multi_sequence_documents(tmp_path, small):
    merged = merge_datasets(str(tmp_path / "twice"), [small, small])
    assert merged.document_indices.tolist() == [0, 1, 3, 4, 5, 6, 8, 9, 10]


def test_merge_rejects_mixed_dtypes(tmp_path):
    build(str(tmp_path / "a"), [np.array([1, 2], dtype=np.uint16)])
    build(str(tmp_path / "b"), [np.array([1, 2], dtype=np.int32)], dtype=np.int32)
    with pytest.raises(IndexedDatasetError, match="dtype"):
        merge_datasets(str(tmp_path / "m"), [str(tmp_path / "a"), str(tmp_path / "b")])
    assert not os.path.exists(tmp_path / "m.idx")
    assert not any(p.name.startswith("m.") for p in tmp_path.iterdir()), "temporaries must be removed"


def test_files_appear_only_at_finalize(tmp_path):
    prefix = str(tmp_path / "x")
    b = IndexedDatasetBuilder(prefix)
    b.add_document([1, 2, 3])
    assert not os.path.exists(prefix + ".bin") and not os.path.exists(prefix + ".idx")
    b.finalize()
    assert os.path.exists(prefix + ".bin") and os.path.exists(prefix + ".idx")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.bin", "x.idx"]


def test_failed_build_leaves_nothing(tmp_path):
    prefix = str(tmp_path / "x")
    with pytest.raises(RuntimeError, match="boom"):
        with IndexedDatasetBuilder(prefix) as b:
            b.add_document([1, 2, 3])
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_builder_rejects_bad_input(tmp_path):
    b = IndexedDatasetBuilder(str(tmp_path / "x"), dtype=np.uint16)
    with pytest.raises(ValueError, match="do not fit"):
        b.add_document(np.array([70000]))
    with pytest.raises(ValueError, match="sum"):
        b.add_documents(np.array([1, 2, 3], dtype=np.uint16), np.array([1, 1]))
    b.add_item([1])
    with pytest.raises(ValueError, match="end_document"):
        b.finalize()
    with pytest.raises(ValueError, match="not storable"):
        IndexedDatasetBuilder(str(tmp_path / "y"), dtype=np.uint32)


def test_best_dtype():
    assert best_dtype(32000) == np.uint16
    assert best_dtype(32001) == np.uint16
    assert best_dtype(65500) == np.int32
    assert best_dtype(128256) == np.int32
    assert best_dtype(None) == np.int32


def test_pickle_reopens(small):
    ds = pickle.loads(pickle.dumps(IndexedDataset(small)))
    assert ds[4].tolist() == [2, 3, 4]
    assert len(pickle.dumps(IndexedDataset(small))) < 200, "pickling must not copy the data"


def test_empty_dataset(tmp_path):
    with IndexedDatasetBuilder(str(tmp_path / "e")) as b:
        b.finalize()
    ds = IndexedDataset(str(tmp_path / "e"))
    assert len(ds) == 0 and ds.num_tokens == 0 and ds.document_indices.tolist() == [0]


# ---- damaged files ---------------------------------------------------------------------------


def _corrupt(src_prefix, dst_prefix, idx=None, bin_=None):
    idx = open(src_prefix + ".idx", "rb").read() if idx is None else idx
    bin_ = open(src_prefix + ".bin", "rb").read() if bin_ is None else bin_
    open(dst_prefix + ".idx", "wb").write(idx)
    open(dst_prefix + ".bin", "wb").write(bin_)
    return dst_prefix


@pytest.mark.parametrize("cut", [0, 5, 9, 17, 20, 33, 34, 40, 54, 80, -8, -1])
def test_truncated_idx(small, tmp_path, cut):
    raw = open(small + ".idx", "rb").read()
    bad = _corrupt(small, str(tmp_path / "bad"), idx=raw[:cut])
    with pytest.raises(IndexedDatasetError, match=r"bad\.idx"):
        IndexedDataset(bad)


@pytest.mark.parametrize("cut", [0, 1, 2, 10, 19])
def test_truncated_bin(small, tmp_path, cut):
    raw = open(small + ".bin", "rb").read()
    bad = _corrupt(small, str(tmp_path / "bad"), bin_=raw[:cut])
    with pytest.raises(IndexedDatasetError, match=r"bad\.bin.*truncated"):
        IndexedDataset(bad)


def test_extended_bin(small, tmp_path):
    bad = _corrupt(small, str(tmp_path / "bad"), bin_=open(small + ".bin", "rb").read() + b"\0\0")
    with pytest.raises(IndexedDatasetError, match="extra bytes"):
        IndexedDataset(bad)


def test_every_flipped_idx_byte_is_caught(small, tmp_path):
    raw = bytearray(open(small + ".idx", "rb").read())
    for i in range(len(raw)):
        flipped = bytearray(raw)
        flipped[i] ^= 0xFF
        bad = _corrupt(small, str(tmp_path / "bad"), idx=bytes(flipped))
        with pytest.raises(IndexedDatasetError, match=r"bad\.(idx|bin)"):
            IndexedDataset(bad)
            pytest.fail(f"flipping byte {i} of the index went unnoticed")


@pytest.mark.parametrize(
    "offset, value, message",
    [
        (0, b"XXIDIDX\x00\x00", "bad magic"),
        (9, struct.pack("<Q", 2), "unsupported index version 2"),
        (17, struct.pack("<B", 9), "unknown dtype code 9"),
        (18, struct.pack("<Q", 2**62), "do not fit"),
    ],
)
def test_header_errors_name_the_problem(small, tmp_path, offset, value, message):
    raw = bytearray(open(small + ".idx", "rb").read())
    raw[offset:offset + len(value)] = value
    bad = _corrupt(small, str(tmp_path / "bad"), idx=bytes(raw))
    with pytest.raises(IndexedDatasetError, match=message):
        IndexedDataset(bad)


def test_pointer_past_end(tmp_path):
    prefix = str(tmp_path / "p")
    np.array([1, 2, 3], dtype=np.uint16).tofile(prefix + ".bin")
    write_idx_reference(prefix + ".idx", 8, 2, [2, 1], [0, 1, 2])
    raw = bytearray(open(prefix + ".idx", "rb").read())
    struct.pack_into("<q", raw, 34 + 8 + 8, 1 << 40)  # second pointer far past the data
    open(prefix + ".idx", "wb").write(raw)
    with pytest.raises(IndexedDatasetError, match="byte pointer"):
        IndexedDataset(prefix)


def test_flipped_bin_byte_caught_by_token_range_check(tmp_path):
    ds = build(str(tmp_path / "v"), [np.arange(100, dtype=np.uint16) for _ in range(3)])
    ds.check_token_range(100)
    raw = bytearray(open(tmp_path / "v.bin", "rb").read())
    raw[2 * 150 + 1] ^= 0xFF  # high byte of token 150 (sequence 1)
    open(tmp_path / "v.bin", "wb").write(raw)
    with pytest.raises(IndexedDatasetError, match=r"token 150 \(sequence 1\)"):
        IndexedDataset(str(tmp_path / "v")).check_token_range(100)


def test_missing_files_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nothere\.idx"):
        IndexedDataset(str(tmp_path / "nothere"))


# ---- int64 byte pointers past 4 GiB --------------------------------------------------------------


def test_pointer_arithmetic_past_4gib():
    lengths = np.array([2**31 - 1, 2**31 - 1, 2**31 - 1, 7], dtype=np.int32)
    for itemsize in (2, 4):
        ptrs = _C.sequence_pointers(lengths, itemsize)
        want = [0]
        for n in lengths[:-1].tolist():
            want.append(want[-1] + n * itemsize)
        assert ptrs.dtype == np.int64 and ptrs.tolist() == want
        assert ptrs[-1] > 2**32


def test_sparse_shard_past_4gib(tmp_path):
    """A >4 GiB shard (a sparse file: nothing is written) validates and reads at the right offsets."""
    prefix = str(tmp_path / "big")
    lengths = [2**31 - 1, 2**30, 3]  # uint16: the last sequence starts at ~6 GiB
    total_bytes = 2 * sum(lengths)
    with open(prefix + ".bin", "wb") as f:
        f.truncate(total_bytes)
        f.seek(total_bytes - 6)
        f.write(np.array([11, 12, 13], dtype="<u2").tobytes())
        f.seek(2 * (2**31 - 1))
        f.write(np.array([42], dtype="<u2").tobytes())
    write_idx_reference(prefix + ".idx", 8, 2, lengths, [0, 2, 3])
    ds = IndexedDataset(prefix)
    assert ds.sequence_pointers[2] == 2 * (2**31 - 1 + 2**30) > 2**32
    assert ds[2].tolist() == [11, 12, 13]
    assert ds.get(1, 0, 1).tolist() == [42]
    assert ds.num_tokens == sum(lengths)


# ---- against Megatron-Core itself, where it is installed -----------------------------------------


def test_byte_identical_to_megatron_core(tmp_path):
    """Our builder and merge write exactly the bytes Megatron-Core's do, and each reads the other's files."""
    megatron = pytest.importorskip("megatron.core.datasets.indexed_dataset")
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(5)
    parts = [random_docs(rng, n, 32000, max_len=300) for n in (40, 25)]
    for k, docs in enumerate(parts):
        build(str(tmp_path / f"ours{k}"), docs)
        theirs = megatron.IndexedDatasetBuilder(str(tmp_path / f"theirs{k}.bin"), dtype=np.uint16)
        for d in docs:
            theirs.add_document(torch.from_numpy(d.astype(np.int64)), [len(d)])
        theirs.finalize(str(tmp_path / f"theirs{k}.idx"))
    merge_datasets(str(tmp_path / "ours"), [str(tmp_path / "ours0"), str(tmp_path / "ours1")])
    theirs = megatron.IndexedDatasetBuilder(str(tmp_path / "theirs.bin"), dtype=np.uint16)
    for k in range(2):
        theirs.add_index(str(tmp_path / f"theirs{k}"))
    theirs.finalize(str(tmp_path / "theirs.idx"))
    for name in ("0", "1", ""):
        for ext in (".bin", ".idx"):
            assert (tmp_path / f"ours{name}{ext}").read_bytes() == (tmp_path / f"theirs{name}{ext}").read_bytes()
    flat = [d for docs in parts for d in docs]
    read_by_megatron = megatron.IndexedDataset(str(tmp_path / "ours"))
    assert all(np.array_equal(read_by_megatron[i], d) for i, d in enumerate(flat))
