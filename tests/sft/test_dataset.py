import json

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from megapmc.sft.dataset import SFTDataset, metadata_path, pack_best_fit, truncate_sample
from megapmc.sft.preprocess import PreprocessConfig, preprocess_sft
from megapmc.sft.template import build_prompt

# By hand: "Below(1) is an instruction that describes a task.(8) Write a response that appropriately
# completes the request.(16) ###(17) Instruction:(18) Say the words.(21) ###(22) Response:(23)".
HAND_RECORD = {"instruction": "Say the words.", "input": "", "output": "alpha beta gamma", "id": "hand"}
HAND_PROMPT_WORDS = 23
HAND_RESPONSE_TOKENS = 3 + 1  # three words and the EOS


def _write_jsonl(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def _preprocess(tmp_path, records, tokenizer, **kwargs):
    data = _write_jsonl(tmp_path / "data.jsonl", records)
    preprocess_sft(PreprocessConfig(str(data), str(tmp_path / "sft"), **kwargs), tokenizer, progress=False)
    return tmp_path / "sft"


def _records(n, words=3):
    return [{"instruction": f"Task number {i}.", "input": "context " * (i % 3), "id": f"r{i}",
             "output": " ".join(f"w{i}_{j}" for j in range(words + i % 5))} for i in range(n)]


def test_loss_mask_counts_exactly_the_response_tokens(tmp_path, word_tokenizer):
    assert len(build_prompt(HAND_RECORD["instruction"]).split()) == HAND_PROMPT_WORDS
    prefix = _preprocess(tmp_path, [HAND_RECORD], word_tokenizer)
    ds = SFTDataset(prefix, seq_length=40, packing=False)
    row = ds[0]
    n = 1 + HAND_PROMPT_WORDS + HAND_RESPONSE_TOKENS  # BOS + prompt + response + EOS = 28 tokens
    assert row["loss_mask"].sum().item() == HAND_RESPONSE_TOKENS
    # Labels tokens[1:]: the counted ones are exactly alpha, beta, gamma, EOS.
    counted = row["tokens"][1:][row["loss_mask"].bool()].tolist()
    assert word_tokenizer.decode(counted[:-1]) == "alpha beta gamma" and counted[-1] == word_tokenizer.eos_id
    assert torch.nonzero(row["loss_mask"]).flatten().tolist() == list(range(n - 1 - HAND_RESPONSE_TOKENS, n - 1))
    assert row["tokens"][0].item() == word_tokenizer.bos_id
    assert row["tokens"][n - 1].item() == word_tokenizer.eos_id


def test_truncation_keeps_the_response_and_cuts_the_prompt_from_the_left():
    tokens = np.arange(1, 21)  # BOS=1, prompt 2..14, response 15..20
    mask = np.r_[np.zeros(14, int), np.ones(6, int)]
    out, m, kind = truncate_sample(tokens, mask, max_len=10, min_prompt_tokens=2)
    assert kind == "prompt"
    assert out.tolist() == [1, 12, 13, 14, 15, 16, 17, 18, 19, 20]  # BOS, the prompt's end, the whole response
    assert m.tolist() == [0, 0, 0, 0, 1, 1, 1, 1, 1, 1]
    out, m, kind = truncate_sample(tokens, mask, max_len=8, min_prompt_tokens=4)
    assert kind == "response"  # the prompt keeps its minimum, the response is cut at its end
    assert out.tolist() == [1, 12, 13, 14, 15, 16, 17, 18]
    out, m, kind = truncate_sample(tokens, mask, max_len=20, min_prompt_tokens=4)
    assert kind == "none" and out.tolist() == tokens.tolist()


def test_truncation_in_the_dataset_keeps_the_response(tmp_path, word_tokenizer):
    long_input = {"instruction": "Summarise.", "input": " ".join(f"x{i}" for i in range(80)),
                  "output": "short answer here", "id": "long"}
    prefix = _preprocess(tmp_path, [long_input], word_tokenizer)
    ds = SFTDataset(prefix, seq_length=31, packing=False, min_prompt_tokens=4)
    row = ds[0]
    assert ds.truncation_counts() == {"samples": 1, "truncated": 1}
    text = word_tokenizer.decode(row["tokens"][1:].tolist())
    assert text.endswith("### Response: short answer here <2>")  # the prompt's end and the whole response
    assert row["loss_mask"].sum().item() == 4


def test_packed_rows_restart_positions_and_separate_segments(tmp_path, word_tokenizer):
    prefix = _preprocess(tmp_path, _records(12), word_tokenizer)
    ds = SFTDataset(prefix, seq_length=128)
    seen = []
    for i in range(len(ds)):
        row = ds[i]
        samples = ds.row_samples(i)
        seen += samples.tolist()
        seg, pos, mask = row["segment_ids"], row["position_ids"], row["loss_mask"]
        tokens = row["tokens"]
        offset = 0
        for k, sample in enumerate(samples):
            t, m, _ = ds.sample(int(sample))
            n = len(t)
            assert tokens[offset:offset + n].tolist() == t.tolist()
            assert (seg[offset:offset + n] == k).all() if offset + n <= 128 else True
            assert pos[offset:min(offset + n, 128)].tolist() == list(range(min(n, 128 - offset)))
            if offset > 0:
                assert mask[offset - 1] == 0  # predicting the next sample's BOS never counts
            offset += n
        assert mask.sum().item() == sum(int(ds.sample(int(s))[1][1:].sum()) for s in samples)
        if offset < 129:
            assert (seg[offset:] == len(samples)).all()  # padding is a segment of its own
    assert sorted(seen) == list(range(12))  # one epoch: every sample once
    assert len(ds) < 12  # several samples share a row


def test_epochs_are_deterministic_and_reshuffled(tmp_path, word_tokenizer):
    prefix = _preprocess(tmp_path, _records(30), word_tokenizer)
    a = SFTDataset(prefix, seq_length=96, num_epochs=3, seed=5)
    b = SFTDataset(prefix, seq_length=96, num_epochs=3, seed=5)
    assert len(a) == len(b)
    for i in range(len(a)):  # a restarted run sees the same rows at the same indices
        assert torch.equal(a[i]["tokens"], b[i]["tokens"])
    epoch0 = [a.row_samples(i).tolist() for i in range(*a.step_rows(0))]  # no samples_per_step: an epoch a step
    epoch1 = [a.row_samples(i).tolist() for i in range(*a.step_rows(1))]
    assert epoch0 != epoch1
    assert sorted(sum(epoch1, [])) == list(range(30))
    c = SFTDataset(prefix, seq_length=96, num_epochs=1, seed=6)
    assert [c.row_samples(i).tolist() for i in range(*c.step_rows(0))] != epoch0


def test_redrawn_instructions_are_used_per_epoch(tmp_path, word_tokenizer):
    pools = tmp_path / "pools.json"
    pools.write_text(json.dumps({"pools": {"seed": ["Variant one.", "Variant two.", "Variant three."]}}))
    records = [{**r, "instruction_pool": "seed"} for r in _records(20)]
    prefix = _preprocess(tmp_path, records, word_tokenizer, redraw_epochs=2, instruction_pools=str(pools))
    ds = SFTDataset(prefix, seq_length=64, packing=False, num_epochs=2)
    per_epoch = [[word_tokenizer.decode(ds[e * 20 + i]["tokens"].tolist()) for i in range(20)] for e in range(2)]
    instructions = [{text.split("Instruction:")[1].split("###")[0].strip() for text in epoch} for epoch in per_epoch]
    assert instructions[0] == {f"Task number {i}." for i in range(20)}  # drawing 0: the JSONL as built
    assert instructions[1] == {"Variant one.", "Variant two.", "Variant three."}  # redrawn from the pool


def test_unfinished_or_missing_data_is_refused(tmp_path, word_tokenizer):
    prefix = _preprocess(tmp_path, _records(3), word_tokenizer)
    metadata_path(prefix).unlink()
    with pytest.raises(FileNotFoundError, match="did not finish"):
        SFTDataset(prefix, seq_length=64)


def test_malformed_instruction_records_are_reported(tmp_path, word_tokenizer):
    data = tmp_path / "data.jsonl"
    data.write_text(json.dumps(HAND_RECORD) + "\n{oops\n" + json.dumps({"instruction": "x"}) + "\n")
    summary = preprocess_sft(PreprocessConfig(str(data), str(tmp_path / "sft")), word_tokenizer, progress=False)
    assert summary.records == 1 and summary.bad_records == 2
    assert summary.problems[0].startswith(f"{data}:2: invalid JSON")
    assert summary.problems[1] == f"{data}:3: missing key 'output'"
    with pytest.raises(ValueError, match=rf"{data}:2"):
        preprocess_sft(PreprocessConfig(str(data), str(tmp_path / "strict"), strict=True), word_tokenizer,
                       progress=False)
    assert not metadata_path(tmp_path / "strict").exists()


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(1, 50), min_size=0, max_size=200), st.integers(50, 80), st.integers(1, 8))
def test_best_fit_packing_places_every_item_once_within_capacity(lengths, capacity, max_open):
    lengths = np.array(lengths, dtype=np.int64)
    row_ptr, items = pack_best_fit(lengths, capacity, max_open)
    assert sorted(items.tolist()) == list(range(len(lengths)))
    for r in range(len(row_ptr) - 1):
        row = items[row_ptr[r]:row_ptr[r + 1]]
        assert len(row) > 0 and lengths[row].sum() <= capacity


def test_a_failed_rebuild_leaves_the_previous_dataset_loadable(tmp_path, word_tokenizer):
    prefix = _preprocess(tmp_path, _records(4), word_tokenizer)
    bad = _write_jsonl(tmp_path / "bad.jsonl", [{"instruction": "x"}])
    with pytest.raises(ValueError, match="no usable records"):
        preprocess_sft(PreprocessConfig(str(bad), str(prefix)), word_tokenizer, progress=False)
    assert len(SFTDataset(prefix, seq_length=64, packing=False)) == 4
    assert sorted(p.name for p in tmp_path.iterdir() if "tmp" in p.name) == []


def test_steps_hold_a_fixed_number_of_samples_however_they_pack(tmp_path, word_tokenizer):
    prefix = _preprocess(tmp_path, _records(12), word_tokenizer)
    ds = SFTDataset(prefix, seq_length=128, samples_per_step=5, rows_multiple=2, num_epochs=2, seed=3)
    assert ds.num_steps == 4  # 24 samples: four whole steps, four samples wait for a third epoch
    stream = []
    for step in range(ds.num_steps):
        first, last = ds.step_rows(step)
        assert (last - first) % 2 == 0
        rows = [ds[i] for i in range(first, last)]
        assert sum(int(r["num_samples"]) for r in rows) == 5
        for i, row in zip(range(first, last), rows):
            if len(ds.row_samples(i)) == 0:  # a padding row: no sample, nothing counted
                assert int(row["num_samples"]) == 0 and row["loss_mask"].sum() == 0
        stream += [int(s) for i in range(first, last) for s in ds.row_samples(i)]
    assert sorted(stream[:12]) == list(range(12))  # epoch 0 entirely in the first 12 samples
    assert stream[12:] != stream[:8]  # epoch 1 is its own shuffle, and step 2 runs across the boundary
    ds.add_epoch()
    assert ds.num_steps == 7  # 36 samples: seven steps, one sample waits
