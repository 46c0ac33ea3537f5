"""The blend puts exact integer per-source counts in every global batch, and floor/ceil in every micro-batch."""
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from blend_helpers import make_sources
from megapmc import _C
from megapmc.data.blended_dataset import BlendedDataset, build_pretraining_datasets
from megapmc.data.config import DataConfig
from megapmc.data.data_plan import integer_weights
from megapmc.data.gpt_dataset import GPTDataset
from megapmc.data.indexed_dataset import IndexedDataset
from megapmc.parallel.state import ParallelState


def check_blend(weights, gbs, mbs, num_batches):
    """Every property the blending index promises, checked against exact rational targets."""
    w = integer_weights(weights)
    total_w = sum(w)
    n = gbs * num_batches
    di, dsi, totals = _C.build_blending_indices(np.asarray(w), gbs, mbs, n)
    k_n = len(w)
    per_batch = np.stack([np.bincount(di[b * gbs:(b + 1) * gbs], minlength=k_n) for b in range(num_batches)])
    assert (per_batch.sum(axis=1) == gbs).all()
    np.testing.assert_array_equal(per_batch, _C.blend_batch_counts(np.asarray(w), gbs, num_batches))
    running = np.cumsum(per_batch, axis=0)
    for b in range(num_batches):
        for k in range(k_n):
            target = Fraction(w[k] * gbs * (b + 1), total_w)
            assert abs(running[b, k] - target) < 1, (weights, gbs, b, k, running[b, k], target)
            if target.denominator == 1:  # the weights divide the batch: exact, not only on average
                assert running[b, k] == target
    # Each micro-batch slice holds floor or ceil of its share of the batch's count.
    for b in range(num_batches):
        for s in range(gbs // mbs):
            lo = b * gbs + s * mbs
            counts = np.bincount(di[lo:lo + mbs], minlength=k_n)
            for k in range(k_n):
                share = Fraction(int(per_batch[b, k]) * mbs, gbs)
                assert counts[k] in (share.numerator // share.denominator, -(-share.numerator // share.denominator))
    # Each source's samples are drawn in order, none skipped or repeated.
    np.testing.assert_array_equal(totals, running[-1])
    for k in range(k_n):
        np.testing.assert_array_equal(dsi[di == k], np.arange(totals[k]))


@pytest.mark.parametrize("mbs", [1, 4, 8, 16, 100, 3200])
def test_paper_ratio_exact_in_every_batch(mbs):
    di, _, totals = _C.build_blending_indices(np.array([15, 4, 1]), 3200, mbs, 3200 * 20)
    for b in range(20):
        np.testing.assert_array_equal(np.bincount(di[b * 3200:(b + 1) * 3200], minlength=3), [2400, 640, 160])
    np.testing.assert_array_equal(totals, [48000, 12800, 3200])


def test_paper_ratio_micro_batches_of_four():
    di, _, _ = _C.build_blending_indices(np.array([15, 4, 1]), 3200, 4, 3200)
    slices = np.stack([np.bincount(di[i:i + 4], minlength=3) for i in range(0, 3200, 4)])
    assert (slices[:, 0] == 3).all()  # 2400 * 4 / 3200 = 3 books in every micro-batch of 4
    assert set(map(tuple, slices)) == {(3, 1, 0), (3, 0, 1)}


@settings(max_examples=60, deadline=None)
@given(
    weights=st.lists(st.integers(1, 40), min_size=1, max_size=6),
    gbs_factor=st.integers(1, 24),
    mbs=st.sampled_from([1, 2, 3, 4, 8]),
    num_batches=st.integers(1, 12),
)
def test_property_integer_weights(weights, gbs_factor, mbs, num_batches):
    check_blend(weights, gbs_factor * mbs, mbs, num_batches)


@settings(max_examples=40, deadline=None)
@given(
    weights=st.lists(st.sampled_from([0.05, 0.1, 0.2, 0.25, 1 / 3, 0.5, 0.75, 1.5, 2.0, 7.3]), min_size=1, max_size=5),
    gbs=st.sampled_from([1, 7, 10, 64, 99, 320]),
    num_batches=st.integers(1, 10),
)
def test_property_fractional_weights(weights, gbs, num_batches):
    check_blend(weights, gbs, 1, num_batches)


def test_fractional_weights_equal_integer_weights():
    a = _C.build_blending_indices(np.asarray(integer_weights([0.75, 0.2, 0.05])), 320, 4, 3200)
    b = _C.build_blending_indices(np.asarray(integer_weights([15, 4, 1])), 320, 4, 3200)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)


def test_partial_last_batch_is_a_prefix_of_the_full_one():
    full = _C.build_blending_indices(np.array([7, 3, 2]), 100, 5, 1000)
    part = _C.build_blending_indices(np.array([7, 3, 2]), 100, 5, 950)
    np.testing.assert_array_equal(part[0], full[0][:950])
    np.testing.assert_array_equal(part[2], np.bincount(full[0][:950], minlength=3))


@pytest.mark.parametrize("args, message", [
    (([1, 0, 2], 10, 1, 10), "positive"),
    (([1, -3], 10, 1, 10), "positive"),
    (([], 10, 1, 10), "1 to 255 sources"),
    (([1] * 256, 256, 1, 10), "1 to 255 sources"),
    (([1, 2], 0, 1, 10), "global_batch_size"),
    (([1, 2], 10, 3, 10), "divide"),
    (([1, 2], 10, 1, -1), "num_samples"),
])
def test_blending_rejects_bad_input(args, message):
    weights, gbs, mbs, n = args
    with pytest.raises(ValueError, match=message):
        _C.build_blending_indices(np.asarray(weights, dtype=np.int64), gbs, mbs, n)


def test_blended_dataset_returns_the_sources_samples(tmp_path):
    prefixes = make_sources(tmp_path)
    datasets = [GPTDataset(IndexedDataset(p), f"s{k}", "train", (0, len(IndexedDataset(p))), 60, 16, 3)
                for k, p in enumerate(prefixes)]
    blend = BlendedDataset(datasets, ["a", "b", "c"], [5, 3, 2], 20, 4, 100)
    tokens = blend.get_tokens(np.arange(100))
    for i in range(100):
        k, j = int(blend.dataset_index[i]), int(blend.dataset_sample_index[i])
        np.testing.assert_array_equal(tokens[i], datasets[k].get_tokens([j])[0])
        assert (tokens[i][tokens[i] != 2] // 10000 == k).all()  # token bases tell the source apart
        np.testing.assert_array_equal(blend[i]["tokens"].numpy(), tokens[i])


def test_blend_that_draws_more_than_a_source_holds_is_an_error(tmp_path):
    prefixes = make_sources(tmp_path)
    small = GPTDataset(IndexedDataset(prefixes[0]), "books", "train", (0, 10), 5, 16, 3)
    with pytest.raises(ValueError, match="draws .* from 'books'"):
        BlendedDataset([small], ["books"], [1], 10, 1, 50)


def test_build_pretraining_datasets_end_to_end(tmp_path):
    prefixes = make_sources(tmp_path / "data")
    config = DataConfig(["15", prefixes[0], "4", prefixes[1], "1", prefixes[2]], split="90,5,5",
                        micro_batch_size=2, cache_dir=str(tmp_path / "cache"))
    train, valid, test, plan = build_pretraining_datasets(config, 32, 40, None, 2.0, 11, ParallelState.single(),
                                                          verbose=False)
    assert plan.train_samples == len(train) == plan.train_iters * 40
    di = np.asarray(train.dataset_index).reshape(-1, 40)
    for row in di:
        np.testing.assert_array_equal(np.bincount(row, minlength=3), [30, 8, 2])
    # Two epochs over the books' training split, never a third pass.
    books = train.datasets[0]
    assert plan.sources[0].epochs <= 2.0 and books.num_epochs == 2
    assert valid is not None and test is not None and len(valid) > 0
    # The splits hold different documents: no validation sample appears in training.
    train_rows = {tuple(r) for r in train.get_tokens(np.arange(len(train)))}
    assert not any(tuple(r) in train_rows for r in valid.get_tokens(np.arange(len(valid))))


def test_config_parses_megatron_data_path_and_epoch_source(tmp_path):
    config = DataConfig(["15", "/d/books_text_document", "4", "/d/papers_text_document", "1", "/d/general"],
                        epoch_source="papers")
    assert [s.name for s in config.sources] == ["books", "papers", "general"]
    assert [s.weight for s in config.sources] == [15, 4, 1]
    assert config.epoch_source_index() == 1
    with pytest.raises(ValueError, match="--epoch-source 'pubmed'"):
        DataConfig(["1", "/d/books", "1", "/d/papers"], epoch_source="pubmed")
    with pytest.raises(ValueError, match="odd number"):
        DataConfig(["15", "/d/books", "4"])
    with pytest.raises(ValueError, match="positive"):
        DataConfig(["0", "/d/books", "4", "/d/papers"])
    assert DataConfig(["/d/only_text_document"]).sources[0].name == "only"
