"""Validation and test data from separate held-out shards (--valid-data-path / --test-data-path)."""
import pytest

from blend_helpers import make_sources, random_docs, write_shard
from megapmc.data.blended_dataset import build_pretraining_datasets
from megapmc.data.config import DataConfig
from megapmc.parallel.state import ParallelState


def test_split_defaults_and_conflicts(tmp_path):
    prefixes = make_sources(tmp_path)
    blend = ["15", prefixes[0], "4", prefixes[1], "1", prefixes[2]]
    assert DataConfig(blend).split_fractions == pytest.approx((0.969, 0.03, 0.001))
    held = DataConfig(blend, valid_data_path=[prefixes[1]])
    assert held.split == "1" and held.split_fractions == (1.0, 0.0, 0.0)
    assert [s.prefix for s in held.valid_sources] == [prefixes[1]] and held.test_sources == []
    with pytest.raises(ValueError, match="--valid-data-path gives separate valid shards, but --split 969,30,1"):
        DataConfig(blend, split="969,30,1", valid_data_path=[prefixes[1]])
    assert DataConfig(blend, split="99,1", test_data_path=prefixes[2]).test_sources[0].prefix == prefixes[2]


def test_training_reads_every_document_and_validation_the_held_out_shard(tmp_path):
    prefixes = make_sources(tmp_path / "train")
    valid = write_shard(tmp_path / "valid" / "heldout_text_document", random_docs(30, seed=9, base=33000))
    config = DataConfig(["15", prefixes[0], "4", prefixes[1], "1", prefixes[2]], valid_data_path=[valid],
                        cache_dir=str(tmp_path / "cache"))
    train, valid_ds, test_ds, plan = build_pretraining_datasets(config, 16, 20, None, 1, 1, ParallelState.single(),
                                                                verbose=False)
    assert [d.document_range for d in train.datasets] == [(0, 120), (0, 200), (0, 80)]
    assert [d.name for d in valid_ds.datasets] == ["heldout"] and valid_ds.datasets[0].document_range == (0, 30)
    assert test_ds is None
    tokens = {int(t) // 10000 for i in range(len(valid_ds)) for t in valid_ds[i]["tokens"]} - {0}
    assert tokens == {3}, "validation samples come from the held-out shard only"
