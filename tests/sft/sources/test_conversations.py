import json
from collections import Counter

import pytest

from megapmc.sft.sources.common import BadRecordError, Problems
from megapmc.sft.sources.conversations import DEFAULT_POOL, InstructionPools, load_conversations

SEED_INSTRUCTION = "If you are a doctor, please answer the medical questions based on the patient's description."


def _write_conversations(path, n, instruction=SEED_INSTRUCTION):
    path.write_text(json.dumps([{"instruction": instruction, "input": f"question {i}", "output": f"answer {i}"}
                                for i in range(n)]))
    return path


def test_drawing_is_deterministic_under_a_seed_and_varies_across_records(tmp_path, sample_sft_dir):
    pools = InstructionPools.load(sample_sft_dir / "instruction_pool.json")
    data = _write_conversations(tmp_path / "conv.json", 60)
    first = [r.instruction for r in load_conversations(data, pools, Problems(), seed=7)]
    again = [r.instruction for r in load_conversations(data, pools, Problems(), seed=7)]
    other_seed = [r.instruction for r in load_conversations(data, pools, Problems(), seed=8)]
    assert first == again
    assert first != other_seed
    counts = Counter(first)
    # Five candidates (the seed and four paraphrases) and 60 records: every candidate is drawn.
    assert set(counts) == set(pools.pools[SEED_INSTRUCTION])
    assert max(counts.values()) < 30


def test_drawing_does_not_depend_on_record_order(tmp_path, sample_sft_dir):
    pools = InstructionPools.load(sample_sft_dir / "instruction_pool.json")
    items = [{"id": f"r{i}", "instruction": SEED_INSTRUCTION, "input": "", "output": f"a{i}"} for i in range(20)]
    (tmp_path / "a.json").write_text(json.dumps(items))
    (tmp_path / "b.json").write_text(json.dumps(items[::-1]))
    a = {r.id: r.instruction for r in load_conversations(tmp_path / "a.json", pools, Problems())}
    b = {r.id: r.instruction for r in load_conversations(tmp_path / "b.json", pools, Problems())}
    assert a == b


def test_redraw_per_epoch_changes_instructions(sample_sft_dir):
    pools = InstructionPools.load(sample_sft_dir / "instruction_pool.json")
    epoch0 = [pools.draw(SEED_INSTRUCTION, 1, f"r{i}", 0) for i in range(30)]
    epoch1 = [pools.draw(SEED_INSTRUCTION, 1, f"r{i}", 1) for i in range(30)]
    assert epoch0 != epoch1


def test_pool_file_formats(tmp_path):
    (tmp_path / "lines.txt").write_text("Answer as a doctor.\n\nReply like a physician.\nAnswer as a doctor.\n")
    pools = InstructionPools.load(tmp_path / "lines.txt")
    assert pools.pools == {DEFAULT_POOL: ["Answer as a doctor.", "Reply like a physician."]}
    assert pools.pool_for("anything") == DEFAULT_POOL
    (tmp_path / "list.json").write_text(json.dumps(["x", "y"]))
    assert InstructionPools.load(tmp_path / "list.json").pools == {DEFAULT_POOL: ["x", "y"]}
    (tmp_path / "dict.json").write_text(json.dumps({"seed": ["p1", "p2"]}))
    pools = InstructionPools.load(tmp_path / "dict.json")
    assert pools.pools == {"seed": ["seed", "p1", "p2"]}
    assert pools.pool_for("other") is None
    pools.save(tmp_path / "saved.json")
    assert InstructionPools.load_saved(tmp_path / "saved.json").pools == pools.pools
    (tmp_path / "str.json").write_text('{"seed": "one paraphrase"}')
    with pytest.raises(ValueError, match="must be a list of paraphrases"):
        InstructionPools.load(tmp_path / "str.json")
    (tmp_path / "bad.json").write_text('{"seed": ["p1",\n 3}')
    with pytest.raises(ValueError, match=r"bad.json:2"):
        InstructionPools.load(tmp_path / "bad.json")


def test_records_outside_every_pool_keep_their_instruction(tmp_path):
    pools = InstructionPools({"seed": ["seed", "p1"]})
    data = _write_conversations(tmp_path / "c.json", 3, instruction="Unpooled instruction.")
    records = list(load_conversations(data, pools, Problems()))
    assert [r.instruction for r in records] == ["Unpooled instruction."] * 3
    assert all(r.instruction_pool is None for r in records)


def test_malformed_conversations_are_reported_with_line_numbers(tmp_path):
    path = tmp_path / "conv.jsonl"
    path.write_text(
        '{"instruction": "a", "input": "", "output": "b"}\n'
        '{"instruction": "a", "output": ""}\n'
        'not json\n'
        '\n'
        '{"instruction": 3, "output": "b"}\n'
        '{"instruction": "a", "input": "x", "output": "c"}\n')
    problems = Problems()
    records = list(load_conversations(path, None, problems))
    assert [r.output for r in records] == ["b", "c"]
    assert problems.total == 3
    assert [m.split(": ", 1)[0] for m in problems.examples] == [f"{path}:2", f"{path}:3", f"{path}:5"]
    assert "'output' is empty" in problems.examples[0]
    assert "invalid JSON" in problems.examples[1]
    with pytest.raises(BadRecordError, match=rf"{path}:2: 'output' is empty"):
        list(load_conversations(path, None, Problems(strict=True)))
