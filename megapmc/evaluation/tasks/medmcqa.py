"""MedMCQA (Pal et al., 2022) from the original release's files.

Expected under ``--data-dir``::

    medmcqa/dev.json     4,183 items: the reported test set (``test.json`` has no answers)
    medmcqa/train.json   train (few-shot examples, fine-tuning)

Each file is JSON lines: ``{"id", "question", "opa", "opb", "opc", "opd", "cop", ...}``. ``cop`` is
1-based (1–4) in the original files and 0-based (0–3) in the Hugging Face copy; the loader decides
from the whole file which one it reads and says so in the split's notes (a file holding both a 0 and
a 4 is refused: it cannot be either).
"""
from __future__ import annotations

from pathlib import Path

from megapmc.evaluation.tasks.common import (
    LoadedSplit, Malformed, MultipleChoiceItem, nonempty_str, read_json_lines, require_file,
)

FILES = {"test": "medmcqa/dev.json", "dev": "medmcqa/dev.json", "train": "medmcqa/train.json"}
OPTION_KEYS = ("opa", "opb", "opc", "opd")
LETTERS = ("A", "B", "C", "D")


def detect_cop_base(cops: list[int]) -> tuple[int, str]:
    """Return ``(base, explanation)`` for the ``cop`` values of one file."""
    values = set(cops)
    if 0 in values and 4 in values:
        raise ValueError("'cop' takes both 0 and 4: neither 0-based nor 1-based; check the file")
    if 0 in values:
        return 0, "cop is 0-based (a 0 occurs): the Hugging Face copy"
    if 4 in values:
        return 1, "cop is 1-based (a 4 occurs): the original release"
    return 1, "cop holds only 1–3, which fits both conventions; assumed 1-based as in the original release"


def load_medmcqa(data_dir: str | Path, split: str = "test", cop_base: int | None = None) -> LoadedSplit:
    """Load a split; ``cop_base`` (0 or 1) overrides the detection."""
    if split not in FILES:
        raise ValueError(f"MedMCQA split {split!r} is not one of {sorted(FILES)}")
    if cop_base not in (None, 0, 1):
        raise ValueError(f"cop_base must be 0, 1 or None (detect), got {cop_base!r}")
    path = require_file(Path(data_dir) / FILES[split], "medmcqa", FILES[split])
    out = LoadedSplit(task="medmcqa", split=split, source=str(path))
    records = []
    for lineno, rec in read_json_lines(path, out):
        where = f"{path}:{lineno}"
        cop = rec.get("cop")
        if not nonempty_str(rec.get("question")):
            out.malformed.append(Malformed(where, "missing or empty 'question'"))
        elif not all(nonempty_str(rec.get(k)) for k in OPTION_KEYS):
            out.malformed.append(Malformed(where, f"one of {list(OPTION_KEYS)} is missing or empty"))
        elif isinstance(cop, bool) or not isinstance(cop, int) or not 0 <= cop <= 4:
            out.malformed.append(Malformed(where, f"'cop' {cop!r} is not an integer in 0–4"))
        else:
            records.append((lineno, rec))
    if cop_base is None:
        try:
            cop_base, why = detect_cop_base([rec["cop"] for _, rec in records])
        except ValueError as e:
            raise ValueError(f"{path}: {e}") from None
        out.notes.append(f"{path}: {why}")
    else:
        out.notes.append(f"{path}: cop read as {cop_base}-based (given)")
    for lineno, rec in records:
        gold = rec["cop"] - cop_base
        if not 0 <= gold < 4:
            out.malformed.append(Malformed(f"{path}:{lineno}", f"'cop' {rec['cop']} out of range when {cop_base}-based"))
            continue
        out.items.append(MultipleChoiceItem(
            id=str(rec.get("id") or f"{split}-{lineno}"), question=rec["question"].strip(), letters=LETTERS,
            texts=tuple(rec[k].strip() for k in OPTION_KEYS), gold=gold,
        ))
    return out
