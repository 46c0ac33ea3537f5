import json
import subprocess
import sys
from pathlib import Path

import pytest

from megapmc.sft.build import BuildConfig, build_instruction_data, pools_path, summary_path
from megapmc.sft.sources.common import BadRecordError
from megapmc.sft.sources.umls import UmlsConfig
from megapmc.sft.template import MCQ_INSTRUCTION, MCQ_RATIONALE_INSTRUCTION, PUBMEDQA_INSTRUCTION

REPO = Path(__file__).resolve().parents[2]


def _full_config(d: Path, **overrides) -> BuildConfig:
    return BuildConfig(**{
        "conversations": [str(d / "conversations.json")], "instruction_pool": str(d / "instruction_pool.json"),
        "medqa": [str(d / "medqa_train.jsonl")], "medmcqa": [str(d / "medmcqa_train.json")],
        "pubmedqa": [str(d / "pubmedqa_ori_pqal.json")],
        "pubmedqa_exclude": [str(d / "pubmedqa_test_ground_truth.json")],
        "rationales": [str(d / "rationales.jsonl")], "umls_dir": str(d / "umls"),
        "medc_i": [str(d / "medc_i_excerpt.json")], **overrides})


def _read(path):
    return [json.loads(line) for line in Path(path).read_text().splitlines()]


def test_build_all_sources_with_summary(tmp_path, sample_sft_dir, word_tokenizer):
    out = tmp_path / "medc_i.jsonl"
    summary = build_instruction_data(_full_config(sample_sft_dir), out, word_tokenizer, progress=False)
    records = _read(out)
    # Each benchmark question: a short-answer row, and a rationale (or PubMedQA long-answer) row when known.
    assert len(records) == summary.records == 12 + (5 + 3) + (5 + 4) + (3 + 3) + 13 + 4
    assert {r["source"] for r in records} == {"conversations", "medqa", "medmcqa", "pubmedqa", "umls", "medc_i"}
    assert all(set(r) >= {"instruction", "input", "output", "source", "id"} for r in records)
    assert len({r["id"] for r in records}) == len(records)
    # Mixed: the first quarter of the file already holds several sources.
    assert len({r["source"] for r in records[:12]}) >= 3
    saved = json.loads(summary_path(out).read_text())
    assert saved["sources"]["medqa"]["details"] == {"answer": 5, "rationale:teacher": 3}
    assert saved["sources"]["pubmedqa"]["details"] == {"excluded": 1, "answer": 3, "rationale:teacher": 1,
                                                       "long_answer": 2}
    # The QA rows draw their instruction from the pool keyed by the benchmark instruction, as the release's
    # paraphrased rows; the rationale rows keep theirs (no pool for it).
    medqa = {r["id"]: r for r in records if r["source"] == "medqa"}
    pool = json.loads((sample_sft_dir / "instruction_pool.json").read_text())[MCQ_INSTRUCTION]
    assert all(medqa[f"medqa-{i}"]["instruction_pool"] == MCQ_INSTRUCTION for i in range(1, 6))
    assert {medqa[f"medqa-{i}"]["instruction"] for i in range(1, 6)} <= {MCQ_INSTRUCTION, *pool}
    assert len({medqa[f"medqa-{i}"]["instruction"] for i in range(1, 6)}) > 1
    assert medqa["medqa-1:rationale"]["instruction"] == MCQ_RATIONALE_INSTRUCTION
    assert saved["sources"]["umls"]["details"]["relation:may_treat"] == 3
    assert saved["tokens"] == sum(s["tokens"] for s in saved["sources"].values()) > 0
    assert pools_path(out).is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [out.name, summary_path(out).name, pools_path(out).name])  # no temporaries left


def test_caps_and_weights(tmp_path, sample_sft_dir):
    out = tmp_path / "o.jsonl"
    config = _full_config(sample_sft_dir, caps={"umls": 4, "conversations": 5}, weights={"medqa": 2, "medmcqa": 0},
                          umls=UmlsConfig(max_per_relation=10))
    summary = build_instruction_data(config, out, progress=False)
    counts = {name: s.written for name, s in summary.sources.items()}
    assert counts == {"conversations": 5, "medqa": 16, "medmcqa": 0, "pubmedqa": 6, "umls": 4, "medc_i": 4}
    assert summary.sources["umls"].read == 13 and summary.sources["umls"].kept == 4
    medqa = [r for r in _read(out) if r["source"] == "medqa"]
    ids = [f"medqa-{i}" for i in range(1, 6)] + [f"medqa-{i}:rationale" for i in (1, 2, 4)]
    assert sorted(r["id"] for r in medqa) == sorted(ids + [f"{i}#1" for i in ids])
    again = tmp_path / "again.jsonl"
    build_instruction_data(config, again, progress=False)
    assert out.read_text() == again.read_text()  # seeded: the same file twice


def test_fractional_weight_repeats_conversations_with_fresh_instructions(tmp_path, sample_sft_dir):
    out = tmp_path / "o.jsonl"
    config = BuildConfig(conversations=[str(sample_sft_dir / "conversations.json")],
                         instruction_pool=str(sample_sft_dir / "instruction_pool.json"),
                         weights={"conversations": 3.5})
    summary = build_instruction_data(config, out, progress=False)
    assert 36 <= summary.records <= 48
    records = _read(out)
    copies = [r["instruction"] for r in records if r["id"].split("#")[0] == "conversations-0"]
    assert len(copies) >= 3 and len(set(copies)) > 1


def test_bad_records_are_counted_not_fatal_unless_strict(tmp_path, sample_sft_dir):
    conv = tmp_path / "conv.jsonl"
    conv.write_text('{"instruction": "a", "output": "b"}\n{"instruction": "a"}\n[1]\n')
    out = tmp_path / "o.jsonl"
    summary = build_instruction_data(BuildConfig(conversations=[str(conv)]), out, progress=False)
    assert summary.records == 1 and summary.sources["conversations"].bad == 2
    assert summary.problems == [f"{conv}:2: missing key 'output'", f"{conv}:3: expected a JSON object, found list"]
    with pytest.raises(BadRecordError, match=rf"{conv}:2"):
        build_instruction_data(BuildConfig(conversations=[str(conv)], strict=True), tmp_path / "s.jsonl",
                               progress=False)
    assert not (tmp_path / "s.jsonl").exists()


@pytest.mark.parametrize("kwargs, message", [
    ({}, "no input"),
    ({"medqa": ["missing.jsonl"]}, "missing.jsonl: input file not found"),
    ({"conversations": ["x"], "caps": {"books": 3}}, "unknown source"),
    ({"rationales": ["r"]}, "--rationales needs"),
])
def test_config_errors_name_the_flag(tmp_path, kwargs, message):
    for key in ("conversations", "rationales"):
        for path in kwargs.get(key, []):
            (tmp_path / path).write_text("")
            kwargs[key] = [str(tmp_path / path)]
    with pytest.raises((ValueError, FileNotFoundError), match=message):
        BuildConfig(**kwargs)


@pytest.mark.slow
def test_command_line_build_and_preprocess(tmp_path, sample_sft_dir, spm_model):
    d = sample_sft_dir
    out = tmp_path / "medc_i.jsonl"
    build = subprocess.run([
        sys.executable, str(REPO / "tools/build_instruction_data.py"), "--output", str(out),
        "--conversations", str(d / "conversations.json"), "--instruction-pool", str(d / "instruction_pool.json"),
        "--medqa", str(d / "medqa_train.jsonl"), "--umls-dir", str(d / "umls"), "--umls-max-per-relation", "1",
        "--cap", "umls=5", "--weight", "medqa=2", "--tokenizer-model", str(spm_model), "--no-progress-bar",
    ], capture_output=True, text=True, cwd=REPO)
    assert build.returncode == 0, build.stderr
    assert "total" in build.stdout and "wrote 27 records" in build.stdout
    prep = subprocess.run([
        sys.executable, str(REPO / "tools/preprocess_sft.py"), "--input", str(out), "--tokenizer-model",
        str(spm_model), "--output-prefix", str(tmp_path / "sft"), "--redraw-epochs", "2", "--no-progress-bar",
    ], capture_output=True, text=True, cwd=REPO)
    assert prep.returncode == 0, prep.stderr
    # 21 redrawn: 11 conversations (one of the 12 has an instruction outside every pool) and the 10 MedQA
    # short-answer rows (5 questions, weight 2), whose instruction has a pool of paraphrases.
    assert prep.stdout.startswith("27 records → 48 samples (21 redrawn)")
    bad = subprocess.run([sys.executable, str(REPO / "tools/build_instruction_data.py"), "--output",
                          str(tmp_path / "x.jsonl"), "--cap", "umls"], capture_output=True, text=True, cwd=REPO)
    assert bad.returncode == 2 and "expected SOURCE=NUMBER" in bad.stderr


@pytest.mark.slow
def test_sample_instruction_data_does_not_leak_the_sample_test_items(tmp_path, sample_sft_dir):
    """The embedded MedC-I fixtures and the embedded benchmark test items share no 13-gram."""
    out = tmp_path / "medc_i.jsonl"
    build_instruction_data(_full_config(sample_sft_dir), out, progress=False)
    check = subprocess.run([sys.executable, str(REPO / "tools/check_contamination.py"), "--train", str(out),
                            "--output-dir", str(tmp_path / "contamination")], capture_output=True, text=True, cwd=REPO)
    assert check.returncode == 0, check.stderr
    report = json.loads((tmp_path / "contamination" / "contamination.json").read_text())
    assert {task: r["contaminated"] for task, r in report["tasks"].items()} == {
        "pubmedqa": 0, "medmcqa": 0, "medqa": 0}


def test_cap_keeps_distinct_records_that_share_an_id(tmp_path):
    for name in ("a", "b"):
        (tmp_path / f"{name}.json").write_text(json.dumps(
            [{"id": i, "instruction": "Answer.", "input": f"{name} question {i}", "output": f"{name} {i}"}
             for i in range(5)]))
    out = tmp_path / "o.jsonl"
    summary = build_instruction_data(BuildConfig(conversations=[str(tmp_path / "a.json"), str(tmp_path / "b.json")],
                                                 caps={"conversations": 8}), out, progress=False)
    assert summary.sources["conversations"].read == 10 and summary.records == 8
    assert len({r["input"] for r in _read(out)}) == 8


def test_answers_only_uses_the_evaluation_prompt(tmp_path, sample_sft_dir):
    """Task-specific fine-tuning: short-answer rows only, each with the evaluation's instruction verbatim."""
    d = sample_sft_dir
    out = tmp_path / "task.jsonl"
    build_instruction_data(BuildConfig(medqa=[str(d / "medqa_train.jsonl")], medmcqa=[str(d / "medmcqa_train.json")],
                                       pubmedqa=[str(d / "pubmedqa_ori_pqal.json")],
                                       instruction_pool=str(d / "instruction_pool.json"), answers_only=True),
                           out, progress=False)
    records = _read(out)
    assert len(records) == 5 + 5 + 4
    assert all(":" not in r["id"] and "instruction_pool" not in r for r in records)
    assert {r["instruction"] for r in records if r["source"] != "pubmedqa"} == {MCQ_INSTRUCTION}
    assert {r["instruction"] for r in records if r["source"] == "pubmedqa"} == {PUBMEDQA_INSTRUCTION}
    assert all(r["output"].startswith("###Answer: OPTION ") and r["output"].endswith(" IS CORRECT.") for r in records)
    with pytest.raises(ValueError, match="--answers-only"):
        BuildConfig(medqa=[str(d / "medqa_train.jsonl")], rationales=[str(d / "rationales.jsonl")], answers_only=True)
