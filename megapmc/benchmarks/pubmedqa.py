"""PubMedQA PQA-L (Jin et al., 2019), reasoning-required setting: the original files and HF copies.

Layouts:

``pubmedqa-original`` -- the repository's ``data/ori_pqal.json``: one JSON object keyed by PMID,
    ``{"QUESTION", "CONTEXTS": [str], "LABELS", "MESHES", "YEAR", "reasoning_required_pred",
    "reasoning_free_pred", "final_decision", "LONG_ANSWER"}``; the test split is the PMIDs of
    ``test_ground_truth.json`` (``{PMID: "yes"|"no"|"maybe"}``, 500 items), whose labels win.
``pubmedqa-hf`` -- ``qiaojin/PubMedQA`` (formerly ``pubmed_qa``) config ``pqa_labeled``, as JSON lines or
    parquet: ``{"pubid", "question", "context": {"contexts": [str], "labels", "meshes", ...},
    "long_answer", "final_decision"}`` (its dataset_info). All 1,000 items sit in one ``train`` split,
    so ``test_ground_truth.json``, when given, selects the test PMIDs.
``pubmedqa-bigbio`` -- ``bigbio/pubmed_qa`` ``pubmed_qa_labeled_fold0_source`` (what lm-eval's
    ``pubmedqa`` task loads; its ``preprocess_pubmedqa.py`` reads ``QUESTION`` and ``CONTEXTS``):
    rows with ori_pqal's upper-case fields, one split per file.

Options are ``yes``/``no``/``maybe``; contexts and question are returned exactly as stored.
"""
from __future__ import annotations

from pathlib import Path

from megapmc.benchmarks.records import BenchmarkFileError, LoadedSplit, MultipleChoiceItem, nonempty_str
from megapmc.benchmarks.rows import first_record, read_json_document, read_rows_with_layout

LABELS = ("yes", "no", "maybe")
LETTERS = ("A", "B", "C")


def pubmedqa_layout(record: dict | None) -> str | None:
    if not record:
        return None
    if "pubid" in record and "final_decision" in record and "context" in record:
        return "pubmedqa-hf"
    if "QUESTION" in record and "CONTEXTS" in record:
        return "pubmedqa-bigbio"
    return None


def read_ground_truth(path: str | Path) -> dict[str, str]:
    """``test_ground_truth.json``: ``{PMID: label}``."""
    data = read_json_document(path)
    if not isinstance(data, dict) or not data:
        raise BenchmarkFileError(f"{path}: expected a non-empty JSON object {{PMID: yes|no|maybe}}")
    return {str(k): v for k, v in data.items()}


def read_pubmedqa(path: str | Path, ground_truth: str | Path | None = None, split: str = "test",
                  strict: bool = False) -> LoadedSplit:
    """Read ``ori_pqal.json`` (a JSON object keyed by PMID) or a PQA-L row file (JSON lines/parquet).

    With ``ground_truth``: ``split="test"`` keeps its PMIDs (its labels win), ``split="train"`` the others.
    Without it every item is kept and a note says so."""
    path = Path(path)
    truth = read_ground_truth(ground_truth) if ground_truth else None
    if path.suffix == ".json" and not _looks_like_rows(path):
        out = LoadedSplit(task="pubmedqa", split=split, source=str(path), layout="pubmedqa-original")
        data = read_json_document(path)
        if not isinstance(data, dict):
            raise BenchmarkFileError(f"{path}: expected a JSON object keyed by PMID (ori_pqal.json), "
                                     f"got {type(data).__name__}")
        records = [(f"{path}:{pmid}", str(pmid), rec) for pmid, rec in data.items()]
    else:
        expected = ("PubMedQA file (expected ori_pqal.json, or rows with 'pubid'/'question'/'context'/"
                    "'final_decision' or 'QUESTION'/'CONTEXTS')")
        rows, layout = read_rows_with_layout(path, pubmedqa_layout, expected)
        out = LoadedSplit(task="pubmedqa", split=split, source=str(path), layout=layout)
        records = []
        for where, rec in rows:
            if isinstance(rec, str):
                out.reject(where, rec, strict)
                continue
            pmid = rec.get("pubid", rec.get("PMID"))
            line = where.rsplit(":", 1)[1].replace("row ", "")
            records.append((where, str(pmid) if pmid is not None else f"{split}-{line}", _upper_fields(rec)))
    if ground_truth:
        out.source += f" + {ground_truth}"
    by_pmid = {pmid: (where, rec) for where, pmid, rec in records}
    if truth is not None:
        if split == "test":
            for pmid in truth:
                if pmid not in by_pmid:
                    out.reject(f"{ground_truth}:{pmid}", f"PMID not in {path.name}", strict)
            chosen = [(by_pmid[p][0], p, by_pmid[p][1]) for p in truth if p in by_pmid]
        else:
            chosen = [r for r in records if r[1] not in truth]
    else:
        chosen = records
        out.notes.append(f"{path}: no test_ground_truth.json given; all {len(records)} labelled items scored")
    disagree = 0
    for where, pmid, rec in chosen:
        if not isinstance(rec, dict):
            out.reject(where, "not a JSON object", strict)
            continue
        label = truth[pmid] if truth is not None and split == "test" else rec.get("final_decision")
        contexts = rec.get("CONTEXTS")
        if not nonempty_str(rec.get("QUESTION")):
            out.reject(where, "missing or empty question", strict)
        elif not isinstance(contexts, list) or not contexts or not all(nonempty_str(c) for c in contexts):
            out.reject(where, "contexts must be a non-empty list of strings", strict)
        elif label not in LABELS:
            out.reject(where, f"label {label!r} is not one of {list(LABELS)}", strict)
        else:
            disagree += rec.get("final_decision") not in (None, label)
            long_answer = rec.get("LONG_ANSWER")
            out.items.append(MultipleChoiceItem(
                id=pmid, question=rec["QUESTION"], letters=LETTERS, texts=LABELS, gold=LABELS.index(label),
                contexts=tuple(contexts), explanation=long_answer if nonempty_str(long_answer) else None,
            ))
    if disagree:
        out.notes.append(f"{disagree} test labels differ from final_decision; the ground-truth file wins")
    return out.require_items()


def _looks_like_rows(path: Path) -> bool:
    """A ``.json`` file of JSON lines (an HF ``to_json`` export) rather than one document."""
    return pubmedqa_layout(first_record(path)) is not None


def _upper_fields(rec: dict) -> dict:
    """An HF ``pqa_labeled`` row in ori_pqal's field names (bigbio rows already use them)."""
    if "QUESTION" in rec:
        return rec
    context = rec.get("context")
    contexts = context.get("contexts") if isinstance(context, dict) else None
    return {"QUESTION": rec.get("question"), "CONTEXTS": contexts, "final_decision": rec.get("final_decision"),
            "LONG_ANSWER": rec.get("long_answer")}
