"""Session-scoped tiny checkpoints shared by the conversion tests."""
from __future__ import annotations

import pytest

from convert_fixtures import make_hf_model, save_bin_shards


@pytest.fixture(scope="session")
def hf_gqa(tmp_path_factory):
    """(model, dir): GQA (4 query, 2 KV heads), vocab 500 (padded by megapmc), sharded safetensors + index."""
    model = make_hf_model()
    path = tmp_path_factory.mktemp("hf_gqa") / "model"
    model.save_pretrained(path, max_shard_size="100KB")
    return model, path


@pytest.fixture(scope="session")
def hf_mha_bin(tmp_path_factory):
    """(model, dir): multi-head attention (LLaMA-1 shape), sharded pytorch_model-*.bin with its index."""
    model = make_hf_model(num_kv_heads=4, seed=1)
    path = tmp_path_factory.mktemp("hf_mha_bin") / "model"
    save_bin_shards(model, path)
    return model, path
