"""The tasks over the shipped sample items: counts, fields, and the train split for few-shot examples.
(Every downloadable layout and every bad input: ``test_layouts.py``.)"""
import json

import pytest

from megapmc.evaluation.tasks import TASKS, get_task


def test_sample_items_load_cleanly(sample_dir):
    counts = {}
    for name, task in TASKS.items():
        for split in ("test", "train"):
            loaded = task.load(sample_dir, split)
            assert loaded.malformed == []
            counts[name, split] = len(loaded.items)
    assert counts == {
        ("pubmedqa", "test"): 5, ("pubmedqa", "train"): 3, ("medmcqa", "test"): 6, ("medmcqa", "train"): 4,
        ("medqa", "test"): 6, ("medqa", "train"): 4, ("medqa_5options", "test"): 3, ("medqa_5options", "train"): 3,
    }


def test_medqa_fields(sample_dir):
    item = TASKS["medqa"].load(sample_dir).items[0]
    assert item.id == "test-1" and item.letters == ("A", "B", "C", "D")
    assert item.texts[item.gold] == "Nitrofurantoin" and item.gold_letter == "C"
    five = TASKS["medqa_5options"].load(sample_dir).items[0]
    assert five.letters == tuple("ABCDE") and five.gold_letter == "C"


def test_pubmedqa_test_split_follows_ground_truth(sample_dir):
    test, train = TASKS["pubmedqa"].load(sample_dir, "test"), TASKS["pubmedqa"].load(sample_dir, "train")
    truth = json.loads((sample_dir / "pubmedqa/test_ground_truth.json").read_text())
    assert [it.id for it in test.items] == list(truth)
    assert [it.texts[it.gold] for it in test.items] == list(truth.values())
    assert not {it.id for it in test.items} & {it.id for it in train.items}


def test_a_five_option_file_is_not_the_four_option_task(sample_dir):
    with pytest.raises(ValueError, match="5-option MedQA, which is task medqa_5options"):
        TASKS["medqa"].load(None, eval_file=sample_dir / "medqa/US/test.jsonl")


def test_cop_base_given_overrides_detection(sample_dir):
    detected = TASKS["medmcqa"].load(sample_dir)
    forced = TASKS["medmcqa"].load(sample_dir, cop_base=0)  # wrong on purpose: the sample files are 1-based
    assert "0-based (given)" in forced.notes[0]
    assert [it.gold - 1 for it in forced.items] == [it.gold for it in detected.items if it.gold < 3]
    assert [m.reason for m in forced.malformed] == ["'cop' 4 out of range when 0-based"]


def test_unknown_task():
    with pytest.raises(ValueError, match="unknown task 'mmlu'.*pubmedqa"):
        get_task("mmlu")
