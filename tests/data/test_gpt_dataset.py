"""GPT samples of seq_length + 1 tokens across documents, per-epoch shuffles, and clear errors on bad input."""
import numpy as np
import pytest

from blend_helpers import make_sources, random_docs, write_shard
from megapmc import _C
from megapmc.data.blended_dataset import build_pretraining_datasets
from megapmc.data.config import DataConfig
from megapmc.data.gpt_dataset import GPTDataset, num_epochs_for, split_bounds
from megapmc.data.indexed_dataset import IndexedDataset
from megapmc.parallel.state import ParallelState


def reference_samples(ds: GPTDataset) -> np.ndarray:
    """Samples rebuilt in Python: the documents in document-index order as one stream, cut every seq_length."""
    stream = np.concatenate([np.asarray(ds.indexed[int(d)]) for d in ds.document_index]).astype(np.int64)
    s = ds.seq_length
    return np.stack([stream[j * s: j * s + s + 1] for j in range(ds.num_samples)])


@pytest.fixture()
def shard(tmp_path):
    return IndexedDataset(write_shard(tmp_path / "books_text_document", random_docs(40, seed=0, base=3000)))


@pytest.mark.parametrize("seq_length, num_samples", [(1, 50), (7, 200), (16, 333), (64, 40), (300, 25)])
def test_samples_match_the_python_reference(shard, seq_length, num_samples):
    ds = GPTDataset(shard, "books", "train", (0, len(shard)), num_samples, seq_length, seed=5)
    expected = reference_samples(ds)[np.asarray(ds.shuffle_index, dtype=np.int64)]
    got = ds.get_tokens(np.arange(num_samples))
    assert got.shape == (num_samples, seq_length + 1) and got.dtype == np.int64
    np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(ds[3]["tokens"].numpy(), expected[3])
    np.testing.assert_array_equal(ds.get_tokens([0, 2], dtype=np.uint16), expected[[0, 2]])


def test_epochs_are_whole_shuffled_passes(shard):
    seq = 16
    ds = GPTDataset(shard, "books", "train", (5, 35), 200, seq, seed=1)
    per_epoch = (ds.tokens_per_epoch - 1) // seq
    assert ds.num_epochs == num_epochs_for(200, ds.tokens_per_epoch, seq) > 1
    docs = np.asarray(ds.document_index).reshape(ds.num_epochs, 30)
    for epoch in docs:  # every epoch holds each document of the split exactly once
        np.testing.assert_array_equal(np.sort(epoch), np.arange(5, 35))
    assert not (docs[0] == docs[1]).all()  # and each epoch has its own order
    # Samples are shuffled within epochs: the first epoch's positions hold only first-epoch samples.
    starts = np.asarray(ds.sample_index[:-1, 0])
    first_epoch = int(np.searchsorted(starts, 30))
    assert first_epoch >= per_epoch - 1
    np.testing.assert_array_equal(np.sort(ds.shuffle_index[:first_epoch]), np.arange(first_epoch))


def test_seed_changes_order_and_same_seed_repeats(shard):
    a = GPTDataset(shard, "books", "train", (0, 40), 100, 8, seed=1).get_tokens(np.arange(100))
    b = GPTDataset(shard, "books", "train", (0, 40), 100, 8, seed=1).get_tokens(np.arange(100))
    c = GPTDataset(shard, "books", "train", (0, 40), 100, 8, seed=2).get_tokens(np.arange(100))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_split_bounds_cover_all_documents():
    assert split_bounds(1000, (0.969, 0.03, 0.001)) == [(0, 969), (969, 999), (999, 1000)]
    assert split_bounds(10, (1.0, 0.0, 0.0)) == [(0, 10), (10, 10), (10, 10)]


def test_empty_shard_is_a_clear_error(tmp_path):
    prefixes = make_sources(tmp_path)
    empty = write_shard(tmp_path / "empty_text_document", [])
    config = DataConfig(["3", prefixes[0], "1", empty], seq_length=8, seed=1, cache_dir=str(tmp_path / "c"))
    with pytest.raises(ValueError, match=r"source 'empty'.*empty_text_document is empty"):
        build_pretraining_datasets(config, None, 4, 40, None, None, ParallelState.single(), verbose=False)


def test_source_too_small_for_one_sample_is_a_clear_error(tmp_path):
    prefixes = make_sources(tmp_path)
    tiny = write_shard(tmp_path / "tiny_text_document", [np.array([5, 6, 2])])
    config = DataConfig(["3", prefixes[0], "1", tiny], split="1", cache_dir=str(tmp_path / "c"))
    with pytest.raises(ValueError, match=r"source 'tiny' holds 3 tokens, fewer than one sample"):
        build_pretraining_datasets(config, 8, 4, 40, None, 1, ParallelState.single(), verbose=False)
    with pytest.raises(ValueError, match=r"the valid split holds no documents"):
        GPTDataset(IndexedDataset(tiny), "tiny", "valid", (1, 1), 1, 8, 1)


def test_sample_index_rejects_bad_input():
    sizes = np.array([5, 0, 7], dtype=np.int32)
    with pytest.raises(ValueError, match=r"doc_idx\[1\] = 3 is outside \[0, 3\)"):
        _C.build_sample_index(sizes, np.array([0, 3], dtype=np.int32), 4, 1)
    with pytest.raises(ValueError, match=r"doc_idx\[0\] = -1"):
        _C.build_sample_index(sizes, np.array([-1], dtype=np.int32), 4, 1)
    with pytest.raises(ValueError, match=r"sizes\[1\] is negative"):
        _C.build_sample_index(np.array([5, -1], dtype=np.int32), np.array([0], dtype=np.int32), 4, 1)
    with pytest.raises(ValueError, match="holds 12 tokens, enough for 2 samples"):
        _C.build_sample_index(sizes, np.array([0, 1, 2], dtype=np.int32), 5, 3)
    with pytest.raises(ValueError, match="seq_length"):
        _C.build_sample_index(sizes, np.array([0], dtype=np.int32), 0, 1)
    with pytest.raises(ValueError, match="1-D"):
        _C.build_sample_index(sizes.reshape(1, 3), np.array([0], dtype=np.int32), 2, 1)
    # Zero-length documents are stepped over; samples end exactly at document ends.
    idx = _C.build_sample_index(sizes, np.array([0, 1, 2], dtype=np.int32), 4, 2)
    np.testing.assert_array_equal(idx, [[0, 0], [0, 4], [2, 3]])


def test_document_and_shuffle_index_reject_bad_input():
    with pytest.raises(ValueError, match="empty"):
        _C.build_document_index(np.array([], dtype=np.int32), 1, 0)
    with pytest.raises(ValueError, match="num_epochs"):
        _C.build_document_index(np.arange(3, dtype=np.int32), 0, 0)
    with pytest.raises(ValueError, match="non-decreasing"):
        _C.build_shuffle_index(np.array([0, 5, 3]), 0)
    with pytest.raises(ValueError, match=r"boundaries\[0\] must be 0"):
        _C.build_shuffle_index(np.array([1, 5]), 0)
    perm = _C.build_shuffle_index(np.array([0, 4, 4, 10]), 3)
    np.testing.assert_array_equal(np.sort(perm[:4]), np.arange(4))
    np.testing.assert_array_equal(np.sort(perm[4:]), np.arange(4, 10))


def test_gatherer_rejects_indices_that_disagree_with_the_data(shard):
    ds = GPTDataset(shard, "books", "train", (0, 40), 20, 8, seed=0)
    tokens, pointers, sizes, doc_index, sample_index, shuffle = ds.gather_source()
    out = np.empty((1, 9), dtype=np.int64)
    with pytest.raises(IndexError, match="index 20 out of range for 20 samples"):
        _C.SampleGatherer([ds.gather_source()], 8).gather(np.array([20]), out)
    with pytest.raises(ValueError, match="out must be"):
        _C.SampleGatherer([ds.gather_source()], 8).gather(np.array([0]), np.empty((1, 8), dtype=np.int64))
    bad_docs = np.full_like(np.asarray(doc_index), 99)
    with pytest.raises(ValueError, match="document 99 out of range"):
        _C.SampleGatherer([(tokens, pointers, sizes, bad_docs, sample_index, shuffle)], 8).gather(np.array([0]), out)
    bad_shuffle = np.full(20, 10_000, dtype=np.int64)
    with pytest.raises(ValueError, match="shuffle index entry 10000 outside the sample index"):
        _C.SampleGatherer([(tokens, pointers, sizes, doc_index, sample_index, bad_shuffle)], 8).gather(np.array([3]), out)
    truncated = tokens[: len(tokens) // 2]
    with pytest.raises(ValueError, match="index and data disagree"):
        _C.SampleGatherer([(truncated, pointers, sizes, doc_index, sample_index, shuffle)], 8).gather(
            np.arange(20), np.empty((20, 9), dtype=np.int64))
    with pytest.raises(ValueError, match="several sources need a dataset_index"):
        _C.SampleGatherer([ds.gather_source()] * 2, 8)
    blend_index = np.array([0, 1], dtype=np.uint8)
    with pytest.raises(ValueError, match=r"dataset_index\[1\] = 1 names no source"):
        _C.SampleGatherer([ds.gather_source()], 8, blend_index, np.array([0, 0])).gather(np.array([1]), out)
    with pytest.raises(IndexError, match="out of range"):
        ds.get_tokens([20])
