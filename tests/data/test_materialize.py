"""Materialised blended shards: the live blend's samples, in order, byte for byte; resumable; verifiable."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from blend_helpers import make_sources
from megapmc.data.blended_dataset import build_pretraining_datasets
from megapmc.data.config import DataConfig
from megapmc.data.indexed_dataset import IndexedDatasetBuilder
from megapmc.data.loader import build_pretraining_data_loader
from megapmc.data.materialize import build_blended_shards
from megapmc.data.materialized_dataset import MaterializedDataset, expand_batch_counts, load_manifest, verify_shards
from megapmc.parallel.state import ParallelState

ROOT = Path(__file__).resolve().parents[2]
SEQ, GBS, MBS, SEED = 16, 20, 2, 9
SAMPLE_BYTES = (SEQ + 1) * 2


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("materialize")
    prefixes = make_sources(tmp / "data")
    data_path = ["15", prefixes[0], "4", prefixes[1], "1", prefixes[2]]
    config = DataConfig(data_path, split="1", micro_batch_size=MBS, cache_dir=str(tmp / "cache"))
    train, _, _, plan = build_pretraining_datasets(config, SEQ, GBS, None, 2, SEED, ParallelState.single(),
                                                   verbose=False)
    return tmp, data_path, train, plan


def materialize(live, out, **kwargs):
    tmp, data_path, train, plan = live
    settings = {"data_path": data_path, "seed": SEED, "train_epochs": 2}
    # Three global batches per shard, so the run spans several shards.
    return build_blended_shards(train, str(out), 3 * GBS * SAMPLE_BYTES, settings, plan, chunk_samples=7,
                                progress=False, **kwargs)


def test_shards_hold_the_live_blend_sample_for_sample(live, tmp_path):
    _, _, train, plan = live
    manifest_path = materialize(live, tmp_path / "blend")
    shards = MaterializedDataset(manifest_path)
    n = len(train)
    assert len(shards) == n == plan.train_samples
    np.testing.assert_array_equal(shards.get_tokens(np.arange(n)), train.get_tokens(np.arange(n)))
    np.testing.assert_array_equal(shards.sources_of(np.arange(n)), train.sources_of(np.arange(n)))
    manifest = load_manifest(manifest_path)
    assert len(manifest["shards"]) == -(-n // (3 * GBS)) > 2
    # Every global batch in the manifest holds the exact 15:4:1 counts of 20: 15/4/1.
    counts = expand_batch_counts(manifest["batch_counts"])
    assert counts.shape == (plan.train_iters, 3) and (counts == [15, 4, 1]).all()
    assert manifest["source_samples"] == {s.name: s.samples for s in plan.sources}
    assert sum(e["source_samples"][0] for e in manifest["shards"]) == plan.sources[0].samples
    assert verify_shards(manifest_path) == []


def test_training_batches_equal_including_across_a_resume(live, tmp_path):
    tmp, data_path, train, _ = live
    manifest_path = materialize(live, tmp_path / "blend")
    for data in ([manifest_path], [str(tmp_path / "blend")]):  # the manifest or the shard prefix
        config = DataConfig(data)
        shards, valid, _, plan = build_pretraining_datasets(config, SEQ, GBS, None, None, SEED,
                                                            ParallelState.single(), verbose=False)
        assert isinstance(shards, MaterializedDataset) and valid is None and plan.train_samples == len(train)
        for consumed in (0, 4 * GBS):
            for rank in range(2):
                parallel = ParallelState(dp_rank=rank, dp_size=2, rank=rank, world_size=2)
                a = build_pretraining_data_loader(train, consumed, MBS, GBS, parallel, 0)
                b = build_pretraining_data_loader(shards, consumed, MBS, GBS, parallel, 0)
                pairs = list(zip(a, b))
                assert len(pairs) == len(a) > 0
                assert all(torch.equal(x["tokens"], y["tokens"]) for x, y in pairs)
    with pytest.raises(ValueError, match="built with --seq-length 16, the run asks for 32"):
        build_pretraining_datasets(DataConfig([manifest_path]), 32, GBS, None, None, None, ParallelState.single())
    with pytest.raises(ValueError, match="built with --global-batch-size 20, the run asks for 40"):
        build_pretraining_datasets(DataConfig([manifest_path]), SEQ, 40, None, None, None, ParallelState.single())
    shorter = build_pretraining_datasets(DataConfig([manifest_path]), SEQ, GBS, 2 * GBS, None, SEED,
                                         ParallelState.single(), verbose=False)[0]
    assert len(shorter) == 2 * GBS
    with pytest.raises(ValueError, match="build the shards for the longer run"):
        build_pretraining_datasets(DataConfig([manifest_path]), SEQ, GBS, len(train) + GBS, None, SEED,
                                   ParallelState.single(), verbose=False)


def counting_add_documents(original, calls, fail_at=None):
    """``IndexedDatasetBuilder.add_documents`` that counts its calls and can die at call ``fail_at``."""
    def add_documents(self, tokens, lengths):
        calls.append(1)
        if len(calls) == fail_at:
            raise KeyboardInterrupt
        return original(self, tokens, lengths)
    return add_documents


def test_interrupted_build_resumes_and_gives_identical_shards(live, tmp_path, monkeypatch):
    reference = load_manifest(materialize(live, tmp_path / "ref" / "blend"))
    original = IndexedDatasetBuilder.add_documents
    # 9 chunks of 7 samples per 60-sample shard: call 22 is inside the third shard.
    monkeypatch.setattr(IndexedDatasetBuilder, "add_documents", counting_add_documents(original, [], fail_at=22))
    out = tmp_path / "run" / "blend"
    with pytest.raises(KeyboardInterrupt):
        materialize(live, out)
    partial = json.loads(Path(f"{out}.manifest.json").read_text())
    assert not partial["complete"] and len(partial["shards"]) == 2
    with pytest.raises(ValueError, match="unfinished build"):
        MaterializedDataset(f"{out}.manifest.json")
    assert not any(".tmp-" in name for name in os.listdir(out.parent))  # the half shard was discarded
    calls = []
    monkeypatch.setattr(IndexedDatasetBuilder, "add_documents", counting_add_documents(original, calls))
    resumed = load_manifest(materialize(live, out))
    assert len(calls) == sum(-(-e["num_samples"] // 7) for e in reference["shards"][2:])  # only shards 2 on
    assert [e["sha256"] for e in resumed["shards"]] == [e["sha256"] for e in reference["shards"]]
    assert resumed["batch_counts"] == reference["batch_counts"]


def test_other_settings_refuse_to_overwrite(live, tmp_path):
    tmp, data_path, train, plan = live
    materialize(live, tmp_path / "blend")
    with pytest.raises(ValueError, match="exists with other settings"):
        build_blended_shards(train, str(tmp_path / "blend"), 3 * GBS * SAMPLE_BYTES, {"seed": 1}, plan,
                             progress=False)


@pytest.mark.slow
def test_checksum_verification_catches_a_flipped_byte(live, tmp_path):
    manifest_path = materialize(live, tmp_path / "blend")
    victim = tmp_path / "blend_00001.bin"
    data = bytearray(victim.read_bytes())
    data[101] ^= 0x01
    victim.write_bytes(bytes(data))
    problems = verify_shards(manifest_path)
    assert len(problems) == 1 and "blend_00001.bin" in problems[0]
    result = subprocess.run([sys.executable, str(ROOT / "tools/inspect_shards.py"), str(tmp_path / "blend"),
                             "--verify", "--sample", "0", "41"], capture_output=True, text=True)
    assert result.returncode == 1
    assert "FAILED" in result.stdout and "blend_00001.bin" in result.stdout
    assert "sample 41 (global batch 2) from" in result.stdout


def test_sources_of_different_dtypes_are_written_in_the_wider_one(tmp_path):
    from blend_helpers import random_docs, write_shard

    narrow = write_shard(tmp_path / "books_text_document", random_docs(60, seed=0, base=3000))
    wide = write_shard(tmp_path / "big_text_document", random_docs(60, seed=1, base=70000), dtype=np.int32)
    config = DataConfig(["3", narrow, "1", wide], split="1", cache_dir=str(tmp_path / "cache"))
    train, _, _, plan = build_pretraining_datasets(config, 8, 8, 64, None, 1, ParallelState.single(), verbose=False)
    manifest_path = build_blended_shards(train, str(tmp_path / "mixed"), 1 << 20, {}, plan, progress=False)
    assert load_manifest(manifest_path)["dtype"] == "int32"
    shards = MaterializedDataset(manifest_path)
    np.testing.assert_array_equal(shards.get_tokens(np.arange(64)), train.get_tokens(np.arange(64)))
    assert (shards.get_tokens(np.arange(64)) >= 70000).any()


def test_the_tool_writes_the_training_stream_and_says_held_out_shards_are_not_written(live, tmp_path):
    tmp, data_path, _, plan = live
    out = tmp_path / "blend"
    proc = subprocess.run(
        [sys.executable, "tools/build_blended_shards.py", "--data-path", *data_path, "--split", "1",
         "--valid-data-path", data_path[3], "--seq-length", str(SEQ), "--global-batch-size", str(GBS),
         "--micro-batch-size", str(MBS), "--train-epochs", "2", "--seed", str(SEED), "--output-prefix", str(out),
         "--data-cache-path", str(tmp / "cache")],
        cwd=ROOT, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0, proc.stderr
    assert "--valid-data-path/--test-data-path are not written here" in proc.stderr
    assert len(MaterializedDataset(f"{out}.manifest.json")) == plan.train_samples
