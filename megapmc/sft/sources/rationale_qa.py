"""Benchmark training splits joined with teacher rationales, in PMC-LLaMA's question/answer format.

Original file formats (the same ones ``megapmc.evaluation`` reads for the test splits):

- **MedQA-USMLE**: JSON lines ``{"question", "options": {"A": ..., "D"/"E": ...}, "answer_idx": "B"}``
  (``US/train.jsonl``, ``US/4_options/phrases_no_exclude_train.jsonl``). Record id ``medqa-<line>``
  (1-based line number) unless the item has an ``id``.
- **MedMCQA**: JSON lines ``{"id", "question", "opa".."opd", "cop", "exp"}``. ``cop`` is 1-based in the
  original files and 0-based in the Hugging Face copy; ``detect_cop_base`` tells them apart. Record id
  ``medmcqa-<id>``.
- **PubMedQA**: ``ori_pqal.json`` / ``ori_pqaa.json``, a JSON object ``{pmid: {"QUESTION", "CONTEXTS",
  "final_decision", "LONG_ANSWER"}}``; the test PMIDs (``test_ground_truth.json``) can be excluded.
  Record id ``pubmedqa-<pmid>``. Options are yes / no / maybe.

**Rationale file** (produced offline by a teacher model): JSON lines ``{"id", "rationale"}`` or one JSON
object ``{id: rationale}``; an id is a record id above or the item's own id (MedMCQA id, PMID).

An item's answer is ``###Answer: OPTION X IS CORRECT.`` followed by ``###Rationale: ...`` from, in
order, the rationale file, the dataset's own explanation (MedMCQA ``exp``, PubMedQA ``LONG_ANSWER``),
or nothing (answer only); ``stats`` counts which.
"""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any, Iterator

from megapmc.data.jsonl import iter_lines, parse_line
from megapmc.sft.sources.common import InstructionRecord, Problems, iter_jsonl, require_str
from megapmc.sft.template import (
    MCQ_INSTRUCTION,
    MCQ_RATIONALE_INSTRUCTION,
    OPTION_LETTERS,
    PUBMEDQA_INSTRUCTION,
    PUBMEDQA_OPTIONS,
    format_answer,
    format_mcq_input,
)

MEDMCQA_OPTION_KEYS = ("opa", "opb", "opc", "opd")


def load_rationales(path: str | Path, problems: Problems) -> dict[str, str]:
    """``{id: rationale}`` from a rationale file (JSON lines or one JSON object)."""
    path = Path(path)
    if not _is_json_lines(path):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}:{e.lineno}: invalid JSON in the rationale file ({e.msg})") from None
        if not isinstance(data, dict):
            raise ValueError(f"{path}: a rationale file is JSON lines of {{id, rationale}} or one {{id: text}} object")
        return {str(k): v.strip() for k, v in data.items() if isinstance(v, str) and v.strip()}
    out = {}
    for line, item in iter_jsonl(path, "rationales", problems):
        try:
            rationale = require_str(item, "rationale")
            if "id" not in item:
                raise ValueError("missing key 'id'")
        except ValueError as e:
            problems.report("rationales", path, line, str(e))
            continue
        out[str(item["id"])] = rationale.strip()
    return out


def _is_json_lines(path: Path) -> bool:
    """JSON lines when the first non-blank line is a whole ``{"id", "rationale"}`` object."""
    with open(path, encoding="utf-8") as f:
        first = next((line for line in f if line.strip()), "")
    try:
        item = json.loads(first)
    except json.JSONDecodeError:
        return False
    return isinstance(item, dict) and "rationale" in item


def _answer(letter: str, ids: tuple[str, ...], rationales: dict[str, str], fallback: str | None,
            stats: Counter) -> tuple[str, bool]:
    """The formatted answer and whether it carries a rationale; counts where the rationale came from."""
    for key in ids:
        if key in rationales:
            stats["rationale"] += 1
            return format_answer(letter, rationales[key]), True
    if fallback and fallback.strip():
        stats["dataset_explanation"] += 1
        return format_answer(letter, fallback), True
    stats["answer_only"] += 1
    return format_answer(letter), False


def load_medqa(path: str | Path, rationales: dict[str, str], problems: Problems,
               stats: Counter | None = None, source: str = "medqa") -> Iterator[InstructionRecord]:
    stats = Counter() if stats is None else stats
    path = Path(path)
    for line, item in iter_jsonl(path, source, problems):
        try:
            question = require_str(item, "question")
            options = item.get("options")
            if not isinstance(options, dict) or len(options) < 2:
                raise ValueError("'options' must be an object with at least two lettered options")
            if any(k not in OPTION_LETTERS or not isinstance(v, str) for k, v in options.items()):
                raise ValueError("'options' keys must be letters A-J and values strings")
            letter = require_str(item, "answer_idx").strip().upper()
            if letter not in options:
                raise ValueError(f"answer_idx {letter!r} is not one of the options {sorted(options)}")
        except ValueError as e:
            problems.report(source, path, line, str(e))
            continue
        raw_id = str(item.get("id", line))
        record_id = f"medqa-{raw_id}"
        output, has_rationale = _answer(letter, (record_id, raw_id), rationales, None, stats)
        instruction = MCQ_RATIONALE_INSTRUCTION if has_rationale else MCQ_INSTRUCTION
        yield InstructionRecord(instruction, format_mcq_input(question, dict(sorted(options.items()))),
                                output, source, record_id)


def detect_cop_base(path: str | Path) -> int:
    """0 or 1: the base of MedMCQA's ``cop`` in this file (0 appears only 0-based, 4 only 1-based).

    A file whose answers are all 1-3 is ambiguous and taken as the original (1-based) files.
    """
    seen = set()
    for _, line in iter_lines(path):
        record, _ = parse_line(line)
        cop = record.get("cop") if record is not None else None
        if isinstance(cop, int):
            seen.add(cop)
        if 0 in seen and 4 in seen:
            raise ValueError(f"{path}: 'cop' takes both 0 and 4, so its base (0 or 1) cannot be told; "
                             f"pass the base explicitly")
    return 0 if 0 in seen else 1


def load_medmcqa(path: str | Path, rationales: dict[str, str], problems: Problems,
                 stats: Counter | None = None, cop_base: int | None = None,
                 source: str = "medmcqa") -> Iterator[InstructionRecord]:
    stats = Counter() if stats is None else stats
    path = Path(path)
    base = detect_cop_base(path) if cop_base is None else cop_base
    if base not in (0, 1):
        raise ValueError(f"MedMCQA cop base must be 0 or 1, got {base}")
    for line, item in iter_jsonl(path, source, problems):
        try:
            question = require_str(item, "question")
            options = [require_str(item, key) for key in MEDMCQA_OPTION_KEYS]
            cop = item.get("cop")
            if not isinstance(cop, int) or not 0 <= cop - base < len(options):
                raise ValueError(f"'cop' is {cop!r}, expected an integer {base}..{base + len(options) - 1}")
            raw_id = str(item["id"]) if "id" in item else str(line)
        except ValueError as e:
            problems.report(source, path, line, str(e))
            continue
        letter = OPTION_LETTERS[cop - base]
        record_id = f"medmcqa-{raw_id}"
        explanation = item.get("exp") if isinstance(item.get("exp"), str) else None
        output, has_rationale = _answer(letter, (record_id, raw_id), rationales, explanation, stats)
        instruction = MCQ_RATIONALE_INSTRUCTION if has_rationale else MCQ_INSTRUCTION
        yield InstructionRecord(instruction, format_mcq_input(question, options), output, source, record_id)


def _line_of_key(text: str, key: str) -> int | None:
    at = text.find(json.dumps(key))
    return text.count("\n", 0, at) + 1 if at >= 0 else None


def load_pubmedqa_ids(path: str | Path) -> set[str]:
    """PMIDs of a PubMedQA split file (``test_ground_truth.json``: ``{pmid: decision}``)."""
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object keyed by PMID")
    return {str(k) for k in data}


def load_pubmedqa(path: str | Path, rationales: dict[str, str], problems: Problems,
                  stats: Counter | None = None, exclude: set[str] = frozenset(),
                  source: str = "pubmedqa") -> Iterator[InstructionRecord]:
    stats = Counter() if stats is None else stats
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    try:
        data: dict[str, Any] = json.loads(text)
    except json.JSONDecodeError as e:
        problems.report(source, path, e.lineno, f"invalid JSON ({e.msg})")
        return
    if not isinstance(data, dict):
        problems.report(source, path, 1, "expected a JSON object keyed by PMID (ori_pqal.json format)")
        return
    for pmid, item in data.items():
        if str(pmid) in exclude:
            stats["excluded"] += 1
            continue
        try:
            question = require_str(item, "QUESTION")
            contexts = item.get("CONTEXTS", [])
            if not isinstance(contexts, list) or not all(isinstance(c, str) for c in contexts):
                raise ValueError("'CONTEXTS' must be a list of strings")
            decision = require_str(item, "final_decision").strip().lower()
            if decision not in PUBMEDQA_OPTIONS:
                raise ValueError(f"final_decision {decision!r} is not one of {PUBMEDQA_OPTIONS}")
        except ValueError as e:
            problems.report(source, path, _line_of_key(text, str(pmid)), f"PMID {pmid}: {e}")
            continue
        letter = OPTION_LETTERS[PUBMEDQA_OPTIONS.index(decision)]
        record_id = f"pubmedqa-{pmid}"
        long_answer = item.get("LONG_ANSWER") if isinstance(item.get("LONG_ANSWER"), str) else None
        output, _ = _answer(letter, (record_id, str(pmid)), rationales, long_answer, stats)
        yield InstructionRecord(PUBMEDQA_INSTRUCTION,
                                format_mcq_input(question, list(PUBMEDQA_OPTIONS), " ".join(contexts)),
                                output, source, record_id)
