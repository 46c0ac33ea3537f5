import json
from collections import Counter

from megapmc.sft.build import BuildConfig, build_instruction_data
from megapmc.sft.sources.common import Problems
from megapmc.sft.sources.medc_i import load_medc_i


def test_released_medc_i_is_taken_as_it_is(sample_sft_dir):
    stats = Counter()
    records = list(load_medc_i(sample_sft_dir / "medc_i_excerpt.json", Problems(), stats))
    assert len(records) == 4
    assert {r.source for r in records} == {"medc_i"}
    assert records[0].id == "medical_flashcards-17"
    assert records[2].output == "###Answer: OPTION B IS CORRECT."
    assert stats["published:umls"] == 1


def test_bad_released_records_have_line_numbers(tmp_path):
    path = tmp_path / "medc_i.json"
    path.write_text('[\n{"instruction": "i", "input": "", "output": "o", "source": "s", "sample_id": 1},\n'
                    '{"instruction": "i", "input": "",\n "source": "s", "sample_id": 2}\n]\n')
    problems = Problems()
    assert [r.id for r in load_medc_i(path, problems)] == ["s-1"]
    assert problems.examples == [f"{path}:3: missing key 'output'"]


# A release.json excerpt in the released layout (a JSON array of {output, source, instruction, input,
# sample_id}). Row 0 is the release's own first row as its public data card quotes it; the other rows
# are made up in the shapes the card describes: medqa_train rows numbered, one question repeated with a
# paraphrased instruction under the same sample_id, and sample_id null for medmcqa, pubmedqa.ori_pqaa
# and umls_relation rows.
def release_excerpt(row_0: dict) -> list[dict]:
    paraphrased = {
        "output": "###Answer: OPTION D IS CORRECT.", "source": "medqa_train",
        "instruction": "As a doctor, please answer the medical question from the patient's account.\n"
                       "Give the best option directly.",
        "input": "###Question: A 23-year-old pregnant woman at 22 weeks gestation presents with burning upon "
                 "urination. Which of the following is the best treatment for this patient?\n###Options:\n"
                 "A. Ampicillin\nB. Ceftriaxone\nC. Doxycycline\nD. Nitrofurantoin\n",
        "sample_id": 0,
    }
    medmcqa = [
        {"output": f"###Answer: OPTION {'ABCD'[i % 4]} IS CORRECT.", "source": "medmcqa",
         "instruction": "You're a doctor, kindly address the medical queries according to the patient's account.\n"
                        "Answer with the best option directly.",
         "input": f"###Question: Made-up question number {i}  \n###Options:\nA. a\nB. b\nC. c\nD. d\n",
         "sample_id": None}
        for i in range(40)
    ]
    others = [
        {"output": "Early mobilisation was associated with a shorter hospital stay.", "source": "pubmedqa.ori_pqaa",
         "instruction": "Answer the question based on the context.", "input": "Does early mobilisation help?",
         "sample_id": None},
        {"output": "Metformin may treat type 2 diabetes mellitus.", "source": "umls_relation",
         "instruction": "What does metformin treat?", "input": "", "sample_id": None},
    ]
    return [row_0, paraphrased, *medmcqa, *others]


def test_release_rows_keep_their_text_and_get_distinct_stable_ids(tmp_path, release_row_0):
    release = release_excerpt(release_row_0)
    path = tmp_path / "release.json"
    path.write_text(json.dumps(release, ensure_ascii=False, indent=1), encoding="utf-8")
    stats = Counter()
    records = list(load_medc_i(path, Problems(), stats))
    assert [(r.instruction, r.input, r.output) for r in records] == [
        (row["instruction"], row["input"], row["output"]) for row in release]  # byte for byte
    assert records[0].id == records[1].id == "medqa_train-0"
    null_ids = [r.id for r in records[2:]]
    assert len(set(null_ids)) == len(null_ids) == 42 and stats["null_sample_id"] == 42
    assert null_ids[0].startswith("medmcqa-h") and null_ids[-1].startswith("umls_relation-h")
    assert [r.id for r in load_medc_i(path, Problems())] == [r.id for r in records]  # stable

    # --weight subsamples the null-id rows one by one (before, they shared one id: all or none), and the
    # paraphrased rows of one question, which share an id and their text, are all written.
    out = tmp_path / "o.jsonl"
    summary = build_instruction_data(BuildConfig(medc_i=[str(path)], weights={"medc_i": 0.5}), out, progress=False)
    written = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    medmcqa = [r for r in written if r["id"].startswith("medmcqa-")]
    assert 8 <= len(medmcqa) <= 32 and summary.records == len(written)
    full = tmp_path / "full.jsonl"
    build_instruction_data(BuildConfig(medc_i=[str(path)], caps={"medc_i": 100}), full, progress=False)
    kept = {(r["instruction"], r["input"], r["output"]) for r in map(json.loads, full.read_text().splitlines())}
    assert kept == {(row["instruction"], row["input"], row["output"]) for row in release}
