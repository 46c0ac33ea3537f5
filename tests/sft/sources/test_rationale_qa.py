"""Benchmark training splits → MedC-I rows: the readers on inputs in the original formats, the exact rows.

The inputs are written here from each format's public documentation: MedQA's 4-option files
(github.com/jind11/MedQA: JSON lines ``{question, answer, options{A..D}, meta_info, answer_idx,
metamap_phrases}``), MedMCQA's (github.com/medmcqa/medmcqa: JSON lines ``{id, question, opa..opd,
cop (1-based), choice_type, exp, subject_name, topic_name}``) and PubMedQA's ``ori_pqaa.json``
(github.com/pubmedqa/pubmedqa: ``{pmid: {QUESTION, CONTEXTS, LABELS, MESHES, LONG_ANSWER,
final_decision}}``). The questions are made up.
"""
import json
from collections import Counter

import pytest

from megapmc.sft.sources.common import Problems
from megapmc.benchmarks import read_medmcqa
from megapmc.sft.sources.rationale_qa import (
    load_medmcqa,
    load_medqa,
    load_pubmedqa,
    load_pubmedqa_ids,
    load_rationales,
    read_medqa,
)
from megapmc.sft.template import MCQ_INSTRUCTION, MCQ_RATIONALE_INSTRUCTION, PUBMEDQA_INSTRUCTION

MEDQA_4_OPTIONS = {
    "question": "A 30-year-old man has a painless genital ulcer with a clean base. Which is the best treatment?",
    "answer": "Benzathine penicillin G", "options": {"A": "Doxycycline", "B": "Benzathine penicillin G",
                                                    "C": "Acyclovir", "D": "Azithromycin"},
    "meta_info": "step2&3", "answer_idx": "B",
    "metamap_phrases": ["30 year old man", "painless genital ulcer", "clean base", "best treatment"],
}
MEDMCQA_LINE = {
    "id": "0f3a-77", "question": "Drug of choice in absence seizures is", "opa": "Phenytoin",
    "opb": "Ethosuximide", "opc": "Carbamazepine", "opd": "Phenobarbitone", "cop": 2, "choice_type": "single",
    "exp": "Ethosuximide blocks T-type calcium channels in thalamic neurons.", "subject_name": "Pharmacology",
    "topic_name": "Antiepileptics",
}
PQA_A = {
    "27810001": {
        "QUESTION": "Does early mobilisation shorten hospital stay after hip fracture surgery?",
        "CONTEXTS": ["Patients were mobilised within 24 hours or later.", "Length of stay was compared."],
        "LABELS": ["METHODS", "RESULTS"], "MESHES": ["Hip Fractures", "Early Ambulation"],
        "LONG_ANSWER": "Early mobilisation was associated with a shorter hospital stay.",
        "final_decision": "yes",
    },
}
QUESTION = ("###Question: A 30-year-old man has a painless genital ulcer with a clean base. Which is the best "
            "treatment?\n###Options:\nA. Doxycycline\nB. Benzathine penicillin G\nC. Acyclovir\nD. Azithromycin\n")


def _jsonl(path, items):
    path.write_text("".join(json.dumps(i) + "\n" for i in items))
    return path


def test_medqa_gives_a_short_answer_row_and_a_rationale_row(tmp_path):
    path = _jsonl(tmp_path / "phrases_no_exclude_train.jsonl", [MEDQA_4_OPTIONS, MEDQA_4_OPTIONS])
    rationales = {"medqa-1": "A painless ulcer with a clean base is primary syphilis."}
    stats = Counter()
    rows = list(load_medqa(path, rationales, Problems(), stats))
    assert [(r.id, r.instruction, r.input, r.output) for r in rows] == [
        ("medqa-1", MCQ_INSTRUCTION, QUESTION, "###Answer: OPTION B IS CORRECT."),
        ("medqa-1:rationale", MCQ_RATIONALE_INSTRUCTION, QUESTION,
         "###Rationale: A painless ulcer with a clean base is primary syphilis.\n###Answer: OPTION B IS CORRECT."),
        ("medqa-2", MCQ_INSTRUCTION, QUESTION, "###Answer: OPTION B IS CORRECT."),  # no rationale known
    ]
    assert stats == {"answer": 2, "rationale:teacher": 1}
    only = list(load_medqa(path, rationales, Problems(), answers_only=True))
    assert [r.id for r in only] == ["medqa-1", "medqa-2"]
    assert next(read_medqa(path, Problems())) == {"id": "1", "question": MEDQA_4_OPTIONS["question"],
                                                  "options": MEDQA_4_OPTIONS["options"], "answer": "B"}


def test_medmcqa_one_based_cop_and_its_explanation_as_the_rationale(tmp_path):
    path = _jsonl(tmp_path / "train.json", [MEDMCQA_LINE, {**MEDMCQA_LINE, "id": "0f3a-78", "cop": 4, "exp": None}])
    assert "1-based" in read_medmcqa(path).notes[0]
    stats = Counter()
    rows = {r.id: r for r in load_medmcqa(path, {}, Problems(), stats)}
    assert sorted(rows) == ["medmcqa-0f3a-77", "medmcqa-0f3a-77:rationale", "medmcqa-0f3a-78"]
    assert rows["medmcqa-0f3a-77"].input == ("###Question: Drug of choice in absence seizures is\n###Options:\n"
                                             "A. Phenytoin\nB. Ethosuximide\nC. Carbamazepine\nD. Phenobarbitone\n")
    assert rows["medmcqa-0f3a-77"].output == "###Answer: OPTION B IS CORRECT."
    assert rows["medmcqa-0f3a-77:rationale"].output == (
        "###Rationale: Ethosuximide blocks T-type calcium channels in thalamic neurons.\n"
        "###Answer: OPTION B IS CORRECT.")
    assert rows["medmcqa-0f3a-78"].output == "###Answer: OPTION D IS CORRECT."
    assert stats == {"answer": 2, "rationale:dataset_explanation": 1}


def test_pubmedqa_pqa_a_rows_answer_and_long_answer(tmp_path):
    path = tmp_path / "ori_pqaa.json"
    path.write_text(json.dumps(PQA_A, indent=1))
    stats = Counter()
    short, long_answer = load_pubmedqa(path, {}, Problems(), stats)
    context_question = ("###Context: Patients were mobilised within 24 hours or later. Length of stay was compared.\n"
                        "###Question: Does early mobilisation shorten hospital stay after hip fracture surgery?\n"
                        "###Options:\nA. yes\nB. no\nC. maybe\n")
    assert (short.id, short.instruction, short.input, short.output) == (
        "pubmedqa-27810001", PUBMEDQA_INSTRUCTION, context_question, "###Answer: OPTION A IS CORRECT.")
    assert (long_answer.id, long_answer.input, long_answer.output) == (
        "pubmedqa-27810001:long_answer", context_question,
        "Early mobilisation was associated with a shorter hospital stay.")  # the abstract's text, as the release
    assert stats == {"answer": 1, "long_answer": 1}
    assert [r.id for r in load_pubmedqa(path, {}, Problems(), answers_only=True)] == ["pubmedqa-27810001"]


def test_sample_files_and_the_test_id_exclusion(sample_sft_dir):
    rationales = load_rationales(sample_sft_dir / "rationales.jsonl", Problems())
    stats = Counter()
    records = list(load_medqa(sample_sft_dir / "medqa_train.jsonl", rationales, Problems(), stats))
    assert stats == {"answer": 5, "rationale:teacher": 3}
    assert all(r.input.endswith("\n") and r.input.count("\nD. ") == 1 and "\nE. " not in r.input for r in records)
    exclude = load_pubmedqa_ids(sample_sft_dir / "pubmedqa_test_ground_truth.json")
    stats = Counter()
    records = list(load_pubmedqa(sample_sft_dir / "pubmedqa_ori_pqal.json", rationales, Problems(), stats, exclude))
    assert {r.id.split(":")[0] for r in records} == {"pubmedqa-91000001", "pubmedqa-91000002", "pubmedqa-91000003"}
    assert stats == {"excluded": 1, "answer": 3, "rationale:teacher": 1, "long_answer": 2}


def test_medmcqa_cop_base_detection(tmp_path):
    one_based = tmp_path / "orig.json"
    zero_based = tmp_path / "hf.json"
    item = {"question": "q", "opa": "a", "opb": "b", "opc": "c", "opd": "d", "id": "x"}
    one_based.write_text("\n".join(json.dumps({**item, "cop": c}) for c in (1, 4, 2)) + "\n")
    zero_based.write_text("\n".join(json.dumps({**item, "cop": c}) for c in (0, 3, 2)) + "\n")
    assert "1-based" in read_medmcqa(one_based).notes[0] and "0-based" in read_medmcqa(zero_based).notes[0]
    letters = [r.output for r in load_medmcqa(zero_based, {}, Problems())]
    assert letters == [f"###Answer: OPTION {x} IS CORRECT." for x in "ADC"]
    letters = [r.output for r in load_medmcqa(one_based, {}, Problems())]
    assert letters == [f"###Answer: OPTION {x} IS CORRECT." for x in "ADB"]


def test_malformed_qa_items_are_reported_with_line_numbers(tmp_path):
    medqa = tmp_path / "medqa.jsonl"
    good = {"question": "q?", "options": {"A": "w", "B": "x", "C": "y", "D": "z"}, "answer_idx": "A"}
    medqa.write_text("\n".join([
        json.dumps(good),
        json.dumps({**good, "answer_idx": "E"}),
        json.dumps({**good, "options": ["x", "y"]}),
        "{broken",
        json.dumps(good),
    ]) + "\n")
    problems = Problems()
    assert len(list(load_medqa(medqa, {}, problems))) == 2
    assert [m.split(": ", 1)[0] for m in problems.examples] == [f"{medqa}:{n}" for n in (2, 3, 4)]
    assert "'answer_idx' 'E' is not one of ['A', 'B', 'C', 'D']" in problems.examples[0]

    pqa = tmp_path / "ori_pqaa.json"
    pqa.write_text(json.dumps({"1": {"QUESTION": "q", "CONTEXTS": ["c"], "final_decision": "perhaps"},
                               "2": {"QUESTION": "q", "CONTEXTS": ["c"], "final_decision": "yes"}}, indent=1))
    problems = Problems()
    assert [r.id for r in load_pubmedqa(pqa, {}, problems)] == ["pubmedqa-2"]
    assert problems.examples[0].startswith(f"{pqa}: PMID 1: label 'perhaps' is not one of")


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
