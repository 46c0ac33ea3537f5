"""Loaders of the original benchmark files: the shipped sample items, cop detection, malformed records."""
import json
import shutil

import pytest

from megapmc.evaluation.tasks import TASKS, get_task
from megapmc.evaluation.tasks.medmcqa import detect_cop_base, load_medmcqa
from megapmc.evaluation.tasks.medqa import load_medqa
from megapmc.evaluation.tasks.pubmedqa import load_pubmedqa


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
    item = load_medqa(sample_dir).items[0]
    assert item.id == "test-1" and item.letters == ("A", "B", "C", "D")
    assert item.texts[item.gold] == "Nitrofurantoin" and item.gold_letter == "C"
    five = load_medqa(sample_dir, num_options=5).items[0]
    assert five.letters == tuple("ABCDE") and five.gold_letter == "C"


def test_pubmedqa_test_split_follows_ground_truth(sample_dir):
    test, train = load_pubmedqa(sample_dir, "test"), load_pubmedqa(sample_dir, "train")
    truth = json.loads((sample_dir / "pubmedqa/test_ground_truth.json").read_text())
    assert [it.id for it in test.items] == list(truth)
    assert [it.texts[it.gold] for it in test.items] == list(truth.values())
    assert not {it.id for it in test.items} & {it.id for it in train.items}
    assert all(len(it.contexts) == 2 for it in test.items)


def _write_lines(path, records):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records))


def _mcqa(cop, **kw):
    return {"id": kw.get("id", f"q{cop}"), "question": kw.get("question", "Which?"), "opa": "a", "opb": "b",
            "opc": "c", "opd": "d", "cop": cop}


@pytest.mark.parametrize("cops,base", [([0, 1, 2], 0), ([1, 4, 2], 1), ([1, 2, 3], 1)])
def test_cop_detection(cops, base, tmp_path):
    _write_lines(tmp_path / "medmcqa/dev.json", [_mcqa(c, id=str(i)) for i, c in enumerate(cops)])
    loaded = load_medmcqa(tmp_path)
    assert [it.gold for it in loaded.items] == [c - base for c in cops]
    assert f"{base}-based" in loaded.notes[0]
    if cops == [1, 2, 3]:
        assert "fits both" in loaded.notes[0]


def test_cop_with_both_0_and_4_is_refused(tmp_path):
    _write_lines(tmp_path / "medmcqa/dev.json", [_mcqa(0), _mcqa(4)])
    with pytest.raises(ValueError, match="dev.json.*neither 0-based nor 1-based"):
        load_medmcqa(tmp_path)
    assert detect_cop_base([2, 3])[0] == 1


def test_malformed_records_are_counted_and_listed(tmp_path):
    _write_lines(tmp_path / "medmcqa/dev.json", [
        _mcqa(1), "{not json", _mcqa(7), {**_mcqa(2), "opc": ""}, [1, 2], _mcqa(4, question=" "), _mcqa(3),
    ])
    loaded = load_medmcqa(tmp_path)
    assert len(loaded.items) == 2
    where = {m.location.rsplit(":", 1)[1]: m.reason for m in loaded.malformed}
    assert sorted(where, key=int) == ["2", "3", "4", "5", "6"]
    assert "not valid JSON" in where["2"] and "'cop' 7" in where["3"] and "not a JSON object" in where["5"]

    good = {"question": "Q?", "options": {"A": "x", "B": "y", "C": "z", "D": "w"}, "answer_idx": "B", "answer": "y"}
    _write_lines(tmp_path / "medqa/US/4_options/phrases_no_exclude_test.jsonl", [
        good, {**good, "answer_idx": "E"}, {**good, "options": {"A": "x", "B": "y"}}, {**good, "answer": "z"},
    ])
    loaded = load_medqa(tmp_path)
    assert len(loaded.items) == 1 and len(loaded.malformed) == 3
    assert any("disagrees" in m.reason for m in loaded.malformed)


def test_pubmedqa_malformed_and_missing_pmids(sample_dir, tmp_path):
    shutil.copytree(sample_dir / "pubmedqa", tmp_path / "pubmedqa")
    truth_path = tmp_path / "pubmedqa/test_ground_truth.json"
    truth = json.loads(truth_path.read_text())
    truth["12345"] = "yes"  # not in ori_pqal
    truth["90000001"] = "perhaps"  # not a label
    truth_path.write_text(json.dumps(truth))
    loaded = load_pubmedqa(tmp_path)
    assert len(loaded.items) == 4
    reasons = sorted(m.reason for m in loaded.malformed)
    assert reasons == ["PMID not in pubmedqa/ori_pqal.json", "label 'perhaps' is not one of ['yes', 'no', 'maybe']"]


def test_missing_file_and_unknown_task_say_what_to_do(tmp_path):
    with pytest.raises(FileNotFoundError, match="phrases_no_exclude_test.jsonl.*--data-dir"):
        load_medqa(tmp_path)
    with pytest.raises(ValueError, match="unknown task 'mmlu'.*pubmedqa"):
        get_task("mmlu")


def test_cop_base_given_overrides_detection(sample_dir):
    detected = load_medmcqa(sample_dir)
    forced = load_medmcqa(sample_dir, cop_base=0)  # wrong on purpose: the sample files are 1-based
    assert "0-based (given)" in forced.notes[0]
    assert [it.gold - 1 for it in forced.items] == [it.gold for it in detected.items if it.gold < 3]
    assert [m.reason for m in forced.malformed] == ["'cop' 4 out of range when 0-based"]
