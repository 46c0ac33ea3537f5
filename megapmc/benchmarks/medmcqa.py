"""MedMCQA (Pal et al., 2022): the original release and the Hugging Face copy.

Files: the release's ``train.json``/``dev.json``/``test.json`` (JSON lines), or the Hugging Face
``openlifescienceai/medmcqa`` splits (``train``/``validation``/``test``) exported as JSON lines or
parquet. Records: ``{"id", "question", "opa", "opb", "opc", "opd", "cop", "choice_type", "exp",
"subject_name", "topic_name"}``. ``dev.json``/``validation`` (4,183 items) is the split everyone
reports: the test split carries no answers (``cop`` is -1 in the HF copy, absent in the release), and
such a file is refused rather than scored as 0%.

``cop`` is 1-based (1-4) in the original files and 0-based (0-3) in the Hugging Face copy (lm-eval's
``medmcqa`` task reads it as 0-based); :func:`detect_cop_base` decides per file and says why.
"""
from __future__ import annotations

from pathlib import Path

from megapmc.benchmarks.records import BenchmarkFileError, LoadedSplit, MultipleChoiceItem, nonempty_str
from megapmc.benchmarks.rows import read_rows

OPTION_KEYS = ("opa", "opb", "opc", "opd")
LETTERS = ("A", "B", "C", "D")


def medmcqa_layout(record: dict | None) -> str | None:
    return "medmcqa" if record and "opa" in record and "question" in record else None


def detect_cop_base(cops: list[int]) -> tuple[int, str]:
    """``(base, explanation)`` for the ``cop`` values of one file: a 0 occurs only 0-based, a 4 only
    1-based; both at once cannot be either; only 1-3 fits both and is taken as the original release."""
    values = set(cops)
    if 0 in values and 4 in values:
        raise ValueError("'cop' takes both 0 and 4: neither 0-based nor 1-based; check the file or pass the base")
    if 0 in values:
        return 0, "cop is 0-based (a 0 occurs): the Hugging Face copy"
    if 4 in values:
        return 1, "cop is 1-based (a 4 occurs): the original release"
    return 1, "cop holds only 1-3, which fits both conventions; assumed 1-based as in the original release"


def _unlabelled(cop) -> bool:
    return cop is None or cop == -1


def read_medmcqa(path: str | Path, split: str = "test", cop_base: int | None = None,
                 strict: bool = False) -> LoadedSplit:
    """Read one MedMCQA file; ``cop_base`` (0 or 1) overrides the detection."""
    if cop_base not in (None, 0, 1):
        raise ValueError(f"cop_base must be 0, 1 or None (detect), got {cop_base!r}")
    path = Path(path)
    out = LoadedSplit(task="medmcqa", split=split, source=str(path), layout="medmcqa")
    records, unlabelled = [], 0
    for where, rec in read_rows(path):
        if isinstance(rec, str):
            out.reject(where, rec, strict)
            continue
        cop = rec.get("cop")
        if _unlabelled(cop):
            unlabelled += 1
            out.reject(where, "no answer ('cop' missing or -1)", strict)
        elif not nonempty_str(rec.get("question")):
            out.reject(where, "missing or empty 'question'", strict)
        elif not all(nonempty_str(rec.get(k)) for k in OPTION_KEYS):
            out.reject(where, f"one of {list(OPTION_KEYS)} is missing or empty", strict)
        elif isinstance(cop, bool) or not isinstance(cop, int) or not 0 <= cop <= 4:
            out.reject(where, f"'cop' {cop!r} is not an integer in 0-4", strict)
        else:
            records.append((where, rec))
    if not records and unlabelled:
        raise BenchmarkFileError(f"{path}: unlabelled ({unlabelled} records without 'cop'): this is MedMCQA's "
                                 f"test split, which has no public answers; use dev.json (HF: validation)")
    if cop_base is None:
        try:
            cop_base, why = detect_cop_base([rec["cop"] for _, rec in records])
        except ValueError as e:
            raise BenchmarkFileError(f"{path}: {e}") from None
        out.notes.append(f"{path}: {why}")
    else:
        out.notes.append(f"{path}: cop read as {cop_base}-based (given)")
    for where, rec in records:
        gold = rec["cop"] - cop_base
        if not 0 <= gold < 4:
            out.reject(where, f"'cop' {rec['cop']} out of range when {cop_base}-based", strict)
            continue
        line = where.rsplit(":", 1)[1].replace("row ", "")
        exp = rec.get("exp")
        out.items.append(MultipleChoiceItem(
            id=str(rec.get("id") or f"{split}-{line}"), question=rec["question"], letters=LETTERS,
            texts=tuple(rec[k] for k in OPTION_KEYS), gold=gold,
            explanation=exp if nonempty_str(exp) else None,
        ))
    return out.require_items()
