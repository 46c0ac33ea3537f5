"""MedQA-USMLE (Jin et al., 2020): the original release and the Hugging Face 4-option export.

Layouts, recognised per file from its first record:

``medqa-original`` -- the release's ``data_clean/questions/US`` JSON lines
    (``4_options/phrases_no_exclude_{train,dev,test}.jsonl``, and ``{train,dev,test}.jsonl`` with 5
    options): ``{"question", "options": {"A": .., "D"|"E": ..}, "answer_idx": "C", "answer", "meta_info"}``.
    No ids: an item's id is ``<split>-<line number>``.
``medqa-gbaker`` -- ``GBaker/MedQA-USMLE-4-options-hf`` (what lm-evaluation-harness's ``medqa_4options``
    loads; fields per its ``preprocess_medqa.py``): ``{"id", "sent1", "sent2", "ending0".."ending3",
    "label": 0-3}``, as JSON lines or parquet.

Texts are returned exactly as stored.
"""
from __future__ import annotations

from pathlib import Path

from megapmc.benchmarks.records import BenchmarkFileError, LoadedSplit, MultipleChoiceItem, nonempty_str
from megapmc.benchmarks.rows import read_rows_with_layout

LETTERS = ("A", "B", "C", "D", "E")
GBAKER_ENDINGS = ("ending0", "ending1", "ending2", "ending3")


def medqa_layout(record: dict | None) -> str | None:
    if not record:
        return None
    if "options" in record and "answer_idx" in record:
        return "medqa-original"
    if "sent1" in record and "ending0" in record:
        return "medqa-gbaker"
    return None


def read_medqa(path: str | Path, split: str = "test", num_options: int | None = None,
               strict: bool = False) -> LoadedSplit:
    """Read one MedQA file. ``num_options`` (4 or 5) is checked against the file when given; otherwise
    the first usable record decides. The split's ``task`` is ``medqa`` (4) or ``medqa_5options``."""
    path = Path(path)
    expected = ("MedQA file (expected 'question'/'options'/'answer_idx' or the 4-option HF export's "
                "'sent1'/'ending0'..'ending3'/'label')")
    rows, layout = read_rows_with_layout(path, medqa_layout, expected)
    out = LoadedSplit(task="medqa", split=split, source=str(path), layout=layout)
    for where, rec in rows:
        if isinstance(rec, str):
            out.reject(where, rec, strict)
            continue
        parsed = _original(rec) if layout == "medqa-original" else _gbaker(rec)
        if isinstance(parsed, str):
            out.reject(where, parsed, strict)
            continue
        question, texts, gold = parsed
        if num_options is None:
            num_options = len(texts)
        if len(texts) != num_options:
            out.reject(where, f"{len(texts)} options where the file's others have {num_options}", strict)
            continue
        line = where.rsplit(":", 1)[1].replace("row ", "")
        item_id = str(rec["id"]) if rec.get("id") not in (None, "") else f"{split}-{line}"
        out.items.append(MultipleChoiceItem(id=item_id, question=question, letters=LETTERS[:len(texts)],
                                            texts=texts, gold=gold))
    if num_options == 5:
        out.task = "medqa_5options"
    elif num_options not in (None, 4):
        raise BenchmarkFileError(f"{path}: {num_options} options per question; MedQA has 4 or 5")
    return out.require_items()


def _original(rec: dict):
    question, options, answer_idx = rec.get("question"), rec.get("options"), rec.get("answer_idx")
    if not nonempty_str(question):
        return "missing or empty 'question'"
    if not isinstance(options, dict) or sorted(options) not in (list(LETTERS[:4]), list(LETTERS)):
        got = sorted(options) if isinstance(options, dict) else type(options).__name__
        return f"'options' must have keys A-D or A-E, got {got}"
    letters = sorted(options)
    if not all(nonempty_str(options[k]) for k in letters):
        return "an option text is missing or empty"
    if answer_idx not in letters:
        return f"'answer_idx' {answer_idx!r} is not one of {letters}"
    answer = rec.get("answer")
    if isinstance(answer, str) and answer.strip() != options[answer_idx].strip():
        return f"'answer' {answer!r} disagrees with options[{answer_idx!r}]"
    return question, tuple(options[k] for k in letters), letters.index(answer_idx)


def _gbaker(rec: dict):
    question, label = rec.get("sent1"), rec.get("label")
    if not nonempty_str(question):
        return "missing or empty 'sent1'"
    if not all(nonempty_str(rec.get(k)) for k in GBAKER_ENDINGS):
        return f"one of {list(GBAKER_ENDINGS)} is missing or empty"
    if isinstance(label, bool) or not isinstance(label, int) or not 0 <= label < 4:
        return f"'label' {label!r} is not an integer in 0-3"
    return question, tuple(rec[k] for k in GBAKER_ENDINGS), label
