"""MedQA-USMLE (Jin et al., 2020) from the original release's JSON-lines files.

Expected under ``--data-dir`` (the layout of the original ``data_clean/questions`` folder)::

    medqa/US/4_options/phrases_no_exclude_test.jsonl    test, 1,273 items (the split everyone reports)
    medqa/US/4_options/phrases_no_exclude_train.jsonl   train (few-shot examples, fine-tuning)
    medqa/US/test.jsonl, medqa/US/train.jsonl           the 5-option version (task ``medqa_5options``)

Each line: ``{"question": str, "options": {"A": str, ...}, "answer_idx": "C", "answer": str, ...}``.
The files carry no ids, so an item's id is ``<split>-<line number>``.
"""
from __future__ import annotations

from pathlib import Path

from megapmc.evaluation.tasks.common import (
    LoadedSplit, Malformed, MultipleChoiceItem, nonempty_str, read_json_lines, require_file,
)

FOUR_OPTIONS = {
    "test": "medqa/US/4_options/phrases_no_exclude_test.jsonl",
    "train": "medqa/US/4_options/phrases_no_exclude_train.jsonl",
}
FIVE_OPTIONS = {"test": "medqa/US/test.jsonl", "train": "medqa/US/train.jsonl"}


def load_medqa(data_dir: str | Path, split: str = "test", num_options: int = 4) -> LoadedSplit:
    files = {4: FOUR_OPTIONS, 5: FIVE_OPTIONS}.get(num_options)
    if files is None:
        raise ValueError(f"MedQA has 4- and 5-option versions, not {num_options}")
    if split not in files:
        raise ValueError(f"MedQA split {split!r} is not one of {sorted(files)}")
    task = "medqa" if num_options == 4 else "medqa_5options"
    path = require_file(Path(data_dir) / files[split], task, files[split])
    out = LoadedSplit(task=task, split=split, source=str(path))
    letters = tuple("ABCDE"[:num_options])
    for lineno, rec in read_json_lines(path, out):
        where = f"{path}:{lineno}"
        question, options, answer_idx = rec.get("question"), rec.get("options"), rec.get("answer_idx")
        if not nonempty_str(question):
            out.malformed.append(Malformed(where, "missing or empty 'question'"))
            continue
        if not isinstance(options, dict) or sorted(options) != list(letters):
            got = sorted(options) if isinstance(options, dict) else type(options).__name__
            out.malformed.append(Malformed(where, f"'options' must have keys {list(letters)}, got {got}"))
            continue
        if not all(nonempty_str(options[k]) for k in letters):
            out.malformed.append(Malformed(where, "an option text is missing or empty"))
            continue
        if answer_idx not in letters:
            out.malformed.append(Malformed(where, f"'answer_idx' {answer_idx!r} is not one of {list(letters)}"))
            continue
        answer = rec.get("answer")
        if answer is not None and answer.strip() != options[answer_idx].strip():
            out.malformed.append(
                Malformed(where, f"'answer' {answer!r} disagrees with options[{answer_idx!r}]")
            )
            continue
        out.items.append(MultipleChoiceItem(
            id=f"{split}-{lineno}", question=question.strip(), letters=letters,
            texts=tuple(options[k].strip() for k in letters), gold=letters.index(answer_idx),
        ))
    return out
