"""Contamination check: planted overlaps are found, disjoint text gives none."""
import gzip
import json

import pytest

from megapmc.evaluation.contamination import NgramIndex, check_contamination, normalise_words, write_contamination
from megapmc.evaluation.tasks import TASKS
from megapmc.testing.fixtures import medical_sentences


@pytest.fixture(scope="module")
def test_items(sample_dir):
    return {name: TASKS[name].load(sample_dir, "test").items for name in ("pubmedqa", "medmcqa", "medqa")}


def _jsonl(path, records, opener=open):
    with opener(path, "wt") as f:
        for r in records:
            f.write(json.dumps(r) + "\n")
    return path


def test_normalisation():
    assert normalise_words("A 24-year-old WOMAN, at 20 weeks'\u00a0gestation!") == \
        ["a", "24", "year", "old", "woman", "at", "20", "weeks", "gestation"]


def test_planted_overlaps_are_found(test_items, tmp_path):
    medqa_q = test_items["medqa"][1].question  # the ST-elevation question
    pubmed_ctx = test_items["pubmedqa"][2].contexts[1]
    short_q = test_items["medmcqa"][5].question  # "Antidote for heparin overdose is:": too short to match
    records = [{"text": s} for s in medical_sentences(200, seed=3)]
    # Reformatted, embedded in other text: case, punctuation and line breaks must not hide it.
    records[50] = {"text": "Case review. " + medqa_q.upper().replace(" ", "\n", 3) + " Discuss."}
    records[120] = {"instruction": "Summarise.", "input": "Background: " + pubmed_ctx, "output": "ok"}
    records[150] = {"text": short_q}
    train = _jsonl(tmp_path / "train.jsonl.gz", records, gzip.open)
    report = check_contamination(test_items, [train], show_progress=False)
    tasks = report.per_task
    assert [i["id"] for i in tasks["medqa"]["items"]] == [test_items["medqa"][1].id]
    assert tasks["medqa"]["items"][0]["source"] == f"{train}:51"
    assert tasks["medqa"]["items"][0]["coverage"] > 0.5
    assert [i["id"] for i in tasks["pubmedqa"]["items"]] == [test_items["pubmedqa"][2].id]
    assert tasks["pubmedqa"]["items"][0]["source"] == f"{train}:121"
    assert tasks["medqa"]["fraction"] == pytest.approx(1 / tasks["medqa"]["checked"])
    assert tasks["medmcqa"]["contaminated"] == 0
    json_path, md_path = write_contamination(report, tmp_path / "out")
    assert json.loads(json_path.read_text())["tasks"]["medqa"]["contaminated"] == 1
    assert f"medqa {test_items['medqa'][1].id}" in md_path.read_text()


def test_short_questions_matched_whole(test_items, tmp_path):
    short = next(it for it in test_items["medmcqa"] if 8 <= len(normalise_words(it.question)) < 13)
    train = _jsonl(tmp_path / "t.jsonl", [{"text": "Recall: " + short.question + " Think."}])
    report = check_contamination(test_items, [train], show_progress=False)
    assert [i["id"] for i in report.per_task["medmcqa"]["items"]] == [short.id]
    off = check_contamination(test_items, [train], min_short_words=0, show_progress=False)
    assert off.per_task["medmcqa"]["contaminated"] == 0


def test_disjoint_text_gives_no_overlap(test_items, tmp_path):
    # Same medical vocabulary, and the benchmarks' own sentence openings, but no 13-word run in common.
    records = [{"text": " ".join(medical_sentences(30, seed=s))} for s in range(40)]
    records.append({"text": "A 24-year-old woman at 20 weeks' gestation has a sore throat and a rash."})
    train = _jsonl(tmp_path / "clean.jsonl", records)
    report = check_contamination(test_items, [train], show_progress=False)
    assert all(r["contaminated"] == 0 for r in report.per_task.values())


def test_bad_training_line_names_its_location(test_items, tmp_path):
    train = tmp_path / "bad.jsonl"
    train.write_text('{"text": "fine"}\n{oops\n')
    with pytest.raises(ValueError, match=r"bad.jsonl:2: not valid JSON"):
        check_contamination(test_items, [train], show_progress=False)
    with pytest.raises(ValueError, match=r"b.jsonl:1: no string field 'body'"):
        check_contamination(test_items, [_jsonl(tmp_path / "b.jsonl", [{"text": "x"}])], text_key="body",
                            show_progress=False)


def test_items_too_short_to_check_are_counted():
    from megapmc.evaluation.tasks import MultipleChoiceItem

    tiny = MultipleChoiceItem("t1", "Koplik spots are seen in:", ("A", "B"), ("Measles", "Mumps"), 0)
    index = NgramIndex({"medmcqa": [tiny]}, n=13, min_short_words=8)
    assert index.unchecked["medmcqa"] == ["t1"] and index.items["medmcqa"] == []


def test_index_counts_ngrams_per_field(test_items):
    item = test_items["medqa"][0]
    q = len(normalise_words(item.question))
    opts = len(normalise_words(" ".join(f"{l} {t}" for l, t in zip(item.letters, item.texts))))
    assert q >= 13 and opts == 13  # fixture facts this test relies on
    for n in (13, 14):
        index = NgramIndex({"medqa": [item]}, n=n, min_short_words=0)
        expected = (q - n + 1) + (opts - n + 1 if opts >= n else 0)  # no n-gram straddles two fields
        assert index.items["medqa"][0].num_ngrams == expected
    whole = NgramIndex({"medqa": [item]}, n=14, min_short_words=8)  # the options block now counts, whole
    assert whole.items["medqa"][0].num_ngrams == q - 13 + 1


def test_no_window_spans_two_records(test_items, tmp_path):
    words = test_items["medqa"][1].question.split()
    assert len(words) >= 13
    # Consecutive records of 10 words: every 13-gram of the question spans two of them.
    records = [{"text": " ".join(words[i:i + 10])} for i in range(0, len(words), 10)]
    split = check_contamination(test_items, [_jsonl(tmp_path / "split.jsonl", records)], show_progress=False)
    assert split.per_task["medqa"]["contaminated"] == 0
    joined = [{"text": " ".join(words)}]
    whole = check_contamination(test_items, [_jsonl(tmp_path / "whole.jsonl", joined)], show_progress=False)
    assert whole.per_task["medqa"]["contaminated"] == 1


def test_workers_give_the_same_report_and_zstd_frames_are_all_read(test_items, tmp_path, monkeypatch):
    import zstandard

    from megapmc.evaluation import contamination

    monkeypatch.setattr(contamination, "CHUNK_CHARS", 2000)  # many chunks, so the workers share them
    questions = [item.question for item in test_items["medqa"]]
    records = [{"text": s} for s in medical_sentences(600, seed=4)]
    records[90] = {"text": "Seen before: " + questions[1]}
    records[91] = {"text": questions[1]}  # the same item again: the first match must stay line 91
    records[540] = {"text": questions[3]}
    half = len(records) // 2
    path = tmp_path / "train.jsonl.zst"
    with open(path, "wb") as f:  # two zstd frames, as `cat a.zst b.zst` makes
        for part in (records[:half], records[half:]):
            f.write(zstandard.ZstdCompressor().compress("".join(json.dumps(r) + "\n" for r in part).encode()))
    one = check_contamination(test_items, [path], show_progress=False)
    two = check_contamination(test_items, [path], show_progress=False, workers=2)
    assert one.to_json() == two.to_json()
    hits = {i["id"]: i["source"] for i in one.per_task["medqa"]["items"]}
    assert hits == {test_items["medqa"][1].id: f"{path}:91", test_items["medqa"][3].id: f"{path}:541"}
