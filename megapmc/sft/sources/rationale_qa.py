"""Benchmark training splits in PMC-LLaMA's question/answer rows: a short-answer row and a rationale row.

Reading the original files (small readers returning plain dicts, apart from the row building below):

- **MedQA-USMLE**: JSON lines ``{"question", "answer", "options": {"A": ..., "D"}, "meta_info",
  "answer_idx": "B", "metamap_phrases"}`` (``US/4_options/phrases_no_exclude_train.jsonl``, the 4-option
  file the paper, the release and the evaluation use). Item id: its ``id`` or its 1-based line number.
- **MedMCQA**: JSON lines ``{"id", "question", "opa".."opd", "cop", "choice_type", "exp", "subject_name",
  "topic_name"}``. ``cop`` is 1-based in the original files and 0-based in the Hugging Face copy;
  ``detect_cop_base`` tells them apart.
- **PubMedQA**: ``ori_pqaa.json`` (PQA-A, the training set) / ``ori_pqal.json``, a JSON object ``{pmid:
  {"QUESTION", "CONTEXTS", "LABELS", "MESHES", "LONG_ANSWER", "final_decision"}}``; given split files'
  PMIDs (``test_ground_truth.json``) can be excluded.

**Rationale file** (produced offline by a teacher model): JSON lines ``{"id", "rationale"}`` or one JSON
object ``{id: rationale}``; an id is a record id (``medqa-<id>``) or the item's own id.

**Rows**, as the released MedC-I (``release.json``; see ``megapmc.sft.template``): every question gives
a short-answer row (id ``<source>-<id>``: ``MCQ_INSTRUCTION``, ``###Answer: OPTION X IS CORRECT.``) and,
when a rationale is known, a rationale row (id ``<source>-<id>:rationale``: ``###Rationale: ...`` then the
answer line). The rationale comes from the rationale file, else the dataset's own explanation (MedMCQA
``exp``). A PubMedQA item's second row answers with its ``LONG_ANSWER``, as the release's
``pubmedqa.ori_pqaa`` rows do (id ``pubmedqa-<pmid>:long_answer``). ``answers_only`` keeps the
short-answer rows alone (task-specific fine-tuning: the prompt is then exactly the evaluation's).
``stats`` counts the rows by kind.
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
    PUBMEDQA_LONG_ANSWER_INSTRUCTION,
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


def _line_of_key(text: str, key: str) -> int | None:
    at = text.find(json.dumps(key))
    return text.count("\n", 0, at) + 1 if at >= 0 else None


def load_pubmedqa_ids(path: str | Path) -> set[str]:
    """PMIDs of a PubMedQA split file (``test_ground_truth.json``: ``{pmid: decision}``)."""
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object keyed by PMID")
    return {str(k) for k in data}


# ----------------------------------------------------------------------------- reading the original files


def read_medqa(path: str | Path, problems: Problems, source: str = "medqa") -> Iterator[dict]:
    """``{"id", "question", "options": {letter: text}, "answer": letter}`` per valid MedQA line."""
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
        yield {"id": str(item.get("id", line)), "question": question, "options": dict(sorted(options.items())),
               "answer": letter}


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


def read_medmcqa(path: str | Path, problems: Problems, cop_base: int | None = None,
                 source: str = "medmcqa") -> Iterator[dict]:
    """``{"id", "question", "options": {A..D}, "answer": letter, "explanation": str | None}`` per valid line."""
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
        except ValueError as e:
            problems.report(source, path, line, str(e))
            continue
        explanation = item.get("exp") if isinstance(item.get("exp"), str) and item["exp"].strip() else None
        yield {"id": str(item["id"]) if "id" in item else str(line), "question": question,
               "options": dict(zip(OPTION_LETTERS, options)), "answer": OPTION_LETTERS[cop - base],
               "explanation": explanation}


def read_pubmedqa(path: str | Path, problems: Problems, exclude: set[str] = frozenset(),
                  stats: Counter | None = None, source: str = "pubmedqa") -> Iterator[dict]:
    """``{"id": pmid, "question", "context", "answer": decision, "long_answer"}`` per valid PMID."""
    stats = Counter() if stats is None else stats
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    try:
        data: dict[str, Any] = json.loads(text)
    except json.JSONDecodeError as e:
        problems.report(source, path, e.lineno, f"invalid JSON ({e.msg})")
        return
    if not isinstance(data, dict):
        problems.report(source, path, 1, "expected a JSON object keyed by PMID (ori_pqaa.json format)")
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
        long_answer = item.get("LONG_ANSWER") if isinstance(item.get("LONG_ANSWER"), str) else None
        yield {"id": str(pmid), "question": question, "context": " ".join(contexts), "answer": decision,
               "long_answer": long_answer if long_answer and long_answer.strip() else None}


# ----------------------------------------------------------------------------- building the rows


def _rationale(source: str, item_id: str, rationales: dict[str, str]) -> str | None:
    for key in (f"{source}-{item_id}", item_id):
        if key in rationales:
            return rationales[key]
    return None


def mcq_rows(item: dict, source: str, rationales: dict[str, str], stats: Counter,
             answers_only: bool = False) -> list[InstructionRecord]:
    """The short-answer row of a multiple-choice item and, unless ``answers_only``, its rationale row."""
    record_id = f"{source}-{item['id']}"
    prompt_input = format_mcq_input(item["question"], item["options"])
    rows = [InstructionRecord(MCQ_INSTRUCTION, prompt_input, format_answer(item["answer"]), source, record_id)]
    stats["answer"] += 1
    if answers_only:
        return rows
    rationale = _rationale(source, item["id"], rationales)
    kind = "rationale:teacher"
    if rationale is None and item.get("explanation"):
        rationale, kind = item["explanation"], "rationale:dataset_explanation"
    if rationale is not None:
        rows.append(InstructionRecord(MCQ_RATIONALE_INSTRUCTION, prompt_input, format_answer(item["answer"], rationale),
                                      source, f"{record_id}:rationale"))
        stats[kind] += 1
    return rows


def pubmedqa_rows(item: dict, rationales: dict[str, str], stats: Counter, answers_only: bool = False,
                  source: str = "pubmedqa") -> list[InstructionRecord]:
    """The short-answer row of a PubMedQA item and, unless ``answers_only``, a teacher-rationale row or
    the release's long-answer row (the abstract's own conclusion, kept as written)."""
    record_id = f"{source}-{item['id']}"
    letter = OPTION_LETTERS[PUBMEDQA_OPTIONS.index(item["answer"])]
    prompt_input = format_mcq_input(item["question"], list(PUBMEDQA_OPTIONS), item["context"])
    rows = [InstructionRecord(PUBMEDQA_INSTRUCTION, prompt_input, format_answer(letter), source, record_id)]
    stats["answer"] += 1
    if answers_only:
        return rows
    rationale = _rationale(source, item["id"], rationales)
    if rationale is not None:
        rows.append(InstructionRecord(MCQ_RATIONALE_INSTRUCTION, prompt_input, format_answer(letter, rationale),
                                      source, f"{record_id}:rationale"))
        stats["rationale:teacher"] += 1
    elif item["long_answer"] is not None:
        rows.append(InstructionRecord(PUBMEDQA_LONG_ANSWER_INSTRUCTION, prompt_input, item["long_answer"],
                                      source, f"{record_id}:long_answer"))
        stats["long_answer"] += 1
    return rows


def load_medqa(path: str | Path, rationales: dict[str, str], problems: Problems, stats: Counter | None = None,
               answers_only: bool = False, source: str = "medqa") -> Iterator[InstructionRecord]:
    stats = Counter() if stats is None else stats
    for item in read_medqa(path, problems, source):
        yield from mcq_rows(item, source, rationales, stats, answers_only)


def load_medmcqa(path: str | Path, rationales: dict[str, str], problems: Problems, stats: Counter | None = None,
                 cop_base: int | None = None, answers_only: bool = False,
                 source: str = "medmcqa") -> Iterator[InstructionRecord]:
    stats = Counter() if stats is None else stats
    for item in read_medmcqa(path, problems, cop_base, source):
        yield from mcq_rows(item, source, rationales, stats, answers_only)


def load_pubmedqa(path: str | Path, rationales: dict[str, str], problems: Problems, stats: Counter | None = None,
                  exclude: set[str] = frozenset(), answers_only: bool = False,
                  source: str = "pubmedqa") -> Iterator[InstructionRecord]:
    stats = Counter() if stats is None else stats
    for item in read_pubmedqa(path, problems, exclude, stats, source):
        yield from pubmedqa_rows(item, rationales, stats, answers_only, source)
