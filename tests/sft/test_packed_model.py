"""A packed row gives every sample the logits and loss it has alone (fp32, CPU, within 1e-5)."""
import json

import pytest
import torch
import torch.nn.functional as F

from megapmc.model.config import LlamaConfig
from megapmc.model.llama import TransformerOptions, build_model
from megapmc.sft.dataset import SFTDataset
from megapmc.sft.preprocess import PreprocessConfig, preprocess_sft


@pytest.fixture(scope="module")
def packed(tmp_path_factory, small_vocab_word_tokenizer):
    tmp = tmp_path_factory.mktemp("packed")
    records = [{"instruction": f"Task {i}.", "input": "some context " * (i % 4), "id": str(i),
                "output": " ".join(f"w{i}_{j}" for j in range(2 + i % 6))} for i in range(10)]
    (tmp / "d.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    preprocess_sft(PreprocessConfig(str(tmp / "d.jsonl"), str(tmp / "sft")), small_vocab_word_tokenizer,
                   progress=False)
    return SFTDataset(tmp / "sft", seq_length=120, seed=3)


@pytest.mark.parametrize("backend", ["sdpa", "math"])
def test_packed_samples_match_the_samples_alone(packed, backend):
    torch.manual_seed(0)
    config = LlamaConfig.from_name("tiny", max_position_embeddings=128)
    model = build_model(config, options=TransformerOptions(attention_backend=backend), seed=11).eval()
    rows = [i for i in range(len(packed)) if len(packed.row_samples(i)) >= 3]
    assert rows, "the fixture should pack at least three samples into a row"
    row = packed[rows[0]]
    tokens = row["tokens"][None]  # [1, s+1]
    with torch.no_grad():
        logits = model(tokens[:, :-1], position_ids=row["position_ids"][None], segment_ids=row["segment_ids"][None])
        loss = model(tokens[:, :-1], position_ids=row["position_ids"][None], segment_ids=row["segment_ids"][None],
                     labels=tokens[:, 1:])
    offset = 0
    for sample in packed.row_samples(rows[0]):
        t, m, _ = packed.sample(int(sample))
        alone = torch.from_numpy(t)[None]
        n = alone.shape[1] - 1  # positions that predict a token of the same sample
        with torch.no_grad():
            alone_logits = model(alone[:, :-1])
            alone_loss = model(alone[:, :-1], labels=alone[:, 1:])
        torch.testing.assert_close(logits[0, offset:offset + n], alone_logits[0], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(loss[0, offset:offset + n], alone_loss[0], atol=1e-5, rtol=1e-5)
        mask = torch.from_numpy(m[1:]).float()
        packed_mask = row["loss_mask"][offset:offset + n]
        assert torch.equal(packed_mask, mask)
        # The masked loss equals cross-entropy over exactly the response positions, computed directly.
        direct = F.cross_entropy(alone_logits[0][mask.bool()][:, :config.vocab_size],
                                 alone[0, 1:][mask.bool()], reduction="sum")
        torch.testing.assert_close((loss[0, offset:offset + n] * packed_mask).sum(), direct, atol=1e-4, rtol=1e-5)
        offset += n + 1
