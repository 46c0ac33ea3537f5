"""Benchmark training splits in PMC-LLaMA's question/answer rows: a short-answer row and a rationale row.

Reading the original files (small readers returning plain dicts, apart from the row building below):

- **MedQA-USMLE**: JSON lines ``{"question", "answer", "options": {"A": ..., "D"}, "meta_info",
  "answer_idx": "B", "metamap_phrases"}`` (``US/4_options/phrases_no_exclude_train.jsonl``, the 4-option
  file the paper, the release and the evaluation use). Item id: its ``id`` or its 1-based line number.
- **MedMCQA**: JSON lines ``{"id", "question", "opa".."opd", "cop", "choice_type", "exp", "subject_name",
  "topic_name"}``. ``cop`` is 1-based in the original files and 0-based in the Hugging Face copy;
  ``megapmc.benchmarks.detect_cop_base`` tells them apart.
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
from typing import Iterator

from megapmc import benchmarks
from megapmc.benchmarks import LoadedSplit, MultipleChoiceItem
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


def load_pubmedqa_ids(path: str | Path) -> set[str]:
    """PMIDs of a PubMedQA split file (``test_ground_truth.json``: ``{pmid: decision}``)."""
    return set(benchmarks.read_ground_truth(path))


# ----------------------------------------------------------------------------- reading the original files


def _items(split: LoadedSplit, problems: Problems, source: str) -> list[MultipleChoiceItem]:
    """The reader's items, after passing each skipped record to ``problems`` as ``file:line`` (PubMedQA's
    keyed file: ``file`` and the PMID)."""
    for bad in split.malformed:
        path, _, where = bad.location.rpartition(":")
        where = where.replace("row ", "")
        if split.layout == "pubmedqa-original":
            problems.report(source, path, None, f"PMID {where}: {bad.reason}")
        else:
            problems.report(source, path, int(where) if where.isdigit() else None, bad.reason)
    return split.items


def read_medqa(path: str | Path, problems: Problems, source: str = "medqa") -> Iterator[dict]:
    """``{"id", "question", "options": {letter: text}, "answer": letter}`` per valid MedQA record, read
    by :func:`megapmc.benchmarks.read_medqa` (any downloaded layout)."""
    for item in _items(benchmarks.read_medqa(path, split="train"), problems, source):
        # The reader names a record without an id "train-<line>"; MedC-I row ids use the line alone.
        yield {"id": item.id.removeprefix("train-"), "question": item.question, "options": dict(zip(item.letters, item.texts)),
               "answer": item.gold_letter}


def read_medmcqa(path: str | Path, problems: Problems, cop_base: int | None = None,
                 source: str = "medmcqa") -> Iterator[dict]:
    """``{"id", "question", "options": {A..D}, "answer": letter, "explanation": str | None}`` per valid
    record, read by :func:`megapmc.benchmarks.read_medmcqa` (which detects the ``cop`` base)."""
    split = benchmarks.read_medmcqa(path, split="train", cop_base=cop_base)
    for note in split.notes:
        print(f"medmcqa: {note}")
    for item in _items(split, problems, source):
        yield {"id": item.id.removeprefix("train-"), "question": item.question,
               "options": dict(zip(item.letters, item.texts)), "answer": item.gold_letter, "explanation": item.explanation}


def read_pubmedqa(path: str | Path, problems: Problems, exclude: set[str] = frozenset(),
                  stats: Counter | None = None, source: str = "pubmedqa") -> Iterator[dict]:
    """``{"id": pmid, "question", "context", "answer": decision, "long_answer"}`` per valid PMID not in
    ``exclude``, read by :func:`megapmc.benchmarks.read_pubmedqa` (``ori_pqaa.json``, ``ori_pqal.json``
    or PQA row files)."""
    stats = Counter() if stats is None else stats
    for item in _items(benchmarks.read_pubmedqa(path, split="train"), problems, source):
        if item.id in exclude:
            stats["excluded"] += 1
            continue
        yield {"id": item.id, "question": item.question, "context": " ".join(item.contexts),
               "answer": item.texts[item.gold], "long_answer": item.explanation}


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
