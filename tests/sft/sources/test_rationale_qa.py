import json
from collections import Counter

import pytest

from megapmc.sft.sources.common import Problems
from megapmc.sft.sources.rationale_qa import (
    detect_cop_base,
    load_medmcqa,
    load_medqa,
    load_pubmedqa,
    load_pubmedqa_ids,
    load_rationales,
)
from megapmc.sft.template import parse_option_answer


def test_medqa_joined_with_rationales(sample_sft_dir):
    rationales = load_rationales(sample_sft_dir / "rationales.jsonl", Problems())
    stats = Counter()
    records = list(load_medqa(sample_sft_dir / "medqa_train.jsonl", rationales, Problems(), stats))
    assert [r.id for r in records] == [f"medqa-{i}" for i in range(1, 6)]
    first = records[0]
    assert first.input.startswith("###Question: A 62-year-old woman with atrial fibrillation")
    assert first.input.endswith("###Options:\nA. Arterial embolism\nB. Deep vein thrombosis\nC. Peripheral neuropathy\n"
                                "D. Lumbar disc herniation")
    assert first.output.startswith("###Answer: OPTION A IS CORRECT.\n###Rationale: Atrial fibrillation lets thrombus")
    assert "then explain" in first.instruction
    five_options = records[2]
    assert "\nE. Urinary 5-hydroxyindoleacetic acid" in five_options.input
    assert five_options.output == "###Answer: OPTION A IS CORRECT."  # no rationale, MedQA has no explanation
    assert "directly" in five_options.instruction
    assert stats == {"rationale": 3, "answer_only": 2}
    assert all(parse_option_answer(r.output) for r in records)


def test_medmcqa_falls_back_to_the_explanation_and_counts(sample_sft_dir):
    rationales = load_rationales(sample_sft_dir / "rationales.jsonl", Problems())
    stats = Counter()
    records = {r.id: r for r in load_medmcqa(sample_sft_dir / "medmcqa_train.json", rationales, Problems(), stats)}
    assert records["medmcqa-a1f0c6de-0001"].output.startswith("###Answer: OPTION B IS CORRECT.\n###Rationale: Carbamazepine")
    # The teacher rationale wins over the dataset's own (null) explanation.
    assert "implant in the ampulla" in records["medmcqa-a1f0c6de-0002"].output
    assert records["medmcqa-a1f0c6de-0004"].output == "###Answer: OPTION A IS CORRECT."
    assert stats == {"dataset_explanation": 3, "rationale": 1, "answer_only": 1}


def test_medmcqa_cop_base_detection(tmp_path):
    one_based = tmp_path / "orig.json"
    zero_based = tmp_path / "hf.json"
    item = {"question": "q", "opa": "a", "opb": "b", "opc": "c", "opd": "d", "id": "x"}
    one_based.write_text("\n".join(json.dumps({**item, "cop": c}) for c in (1, 4, 2)) + "\n")
    zero_based.write_text("\n".join(json.dumps({**item, "cop": c}) for c in (0, 3, 2)) + "\n")
    assert detect_cop_base(one_based) == 1 and detect_cop_base(zero_based) == 0
    letters = [r.output for r in load_medmcqa(zero_based, {}, Problems())]
    assert letters == [f"###Answer: OPTION {x} IS CORRECT." for x in "ADC"]
    letters = [r.output for r in load_medmcqa(one_based, {}, Problems())]
    assert letters == [f"###Answer: OPTION {x} IS CORRECT." for x in "ADB"]


def test_pubmedqa_excludes_test_ids_and_keeps_the_long_answer(sample_sft_dir):
    exclude = load_pubmedqa_ids(sample_sft_dir / "pubmedqa_test_ground_truth.json")
    stats = Counter()
    records = list(load_pubmedqa(sample_sft_dir / "pubmedqa_ori_pqal.json", {}, Problems(), stats, exclude))
    assert [r.id for r in records] == ["pubmedqa-91000001", "pubmedqa-91000002", "pubmedqa-91000003"]
    maybe = records[2]
    assert maybe.input.startswith("###Context: A survey of secondary school pupils")
    assert maybe.input.endswith("###Options:\nA. yes\nB. no\nC. maybe")
    assert maybe.output.startswith("###Answer: OPTION C IS CORRECT.\n###Rationale: Evening screen time may")
    assert stats == {"excluded": 1, "dataset_explanation": 3}  # no rationales passed


def test_malformed_qa_items_are_reported_with_line_numbers(tmp_path):
    medqa = tmp_path / "medqa.jsonl"
    good = {"question": "q?", "options": {"A": "x", "B": "y"}, "answer_idx": "A"}
    medqa.write_text("\n".join([
        json.dumps(good),
        json.dumps({**good, "answer_idx": "C"}),
        json.dumps({**good, "options": ["x", "y"]}),
        "{broken",
        json.dumps(good),
    ]) + "\n")
    problems = Problems()
    assert len(list(load_medqa(medqa, {}, problems))) == 2
    assert [m.split(": ", 1)[0] for m in problems.examples] == [f"{medqa}:{n}" for n in (2, 3, 4)]
    assert "answer_idx 'C' is not one of the options" in problems.examples[0]

    pqa = tmp_path / "ori_pqal.json"
    pqa.write_text(json.dumps({"1": {"QUESTION": "q", "CONTEXTS": ["c"], "final_decision": "perhaps"},
                               "2": {"QUESTION": "q", "CONTEXTS": ["c"], "final_decision": "yes"}}, indent=1))
    problems = Problems()
    assert [r.id for r in load_pubmedqa(pqa, {}, problems)] == ["pubmedqa-2"]
    assert problems.examples[0].startswith(f"{pqa}:2: PMID 1: final_decision 'perhaps'")


def test_rationale_file_as_one_object(tmp_path):
    path = tmp_path / "r.json"
    path.write_text(json.dumps({"medqa-1": " why ", "x": ""}, indent=2))
    assert load_rationales(path, Problems()) == {"medqa-1": "why"}
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "a", "rationale": "r"}\n{"id": "b"}\n')
    problems = Problems()
    assert load_rationales(bad, problems) == {"a": "r"}
    assert problems.examples == [f"{bad}:2: missing key 'rationale'"]
    with pytest.raises(ValueError, match="rationale file"):
        (tmp_path / "list.json").write_text("[1, 2]")
        load_rationales(tmp_path / "list.json", Problems())
