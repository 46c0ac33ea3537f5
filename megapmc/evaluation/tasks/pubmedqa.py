"""PubMedQA PQA-L (Jin et al., 2019) from the original repository's files, reasoning-required setting.

Expected under ``--data-dir``::

    pubmedqa/ori_pqal.json           the 1,000 expert-labelled items, keyed by PMID:
                                     {"QUESTION", "CONTEXTS": [str], "final_decision", "LONG_ANSWER", ...}
    pubmedqa/test_ground_truth.json  {PMID: "yes" | "no" | "maybe"}: the 500 test PMIDs

The test split is the PMIDs of ``test_ground_truth.json`` looked up in ``ori_pqal.json``, with the gold
label taken from the ground-truth file; the train split is the other PMIDs of ``ori_pqal.json`` (the
original train + dev folds). Contexts are given, the long answer is withheld (reasoning-required).
"""
from __future__ import annotations

import json
from pathlib import Path

from megapmc.evaluation.tasks.common import LoadedSplit, Malformed, MultipleChoiceItem, nonempty_str, require_file

ORI_PQAL = "pubmedqa/ori_pqal.json"
TEST_GROUND_TRUTH = "pubmedqa/test_ground_truth.json"
LABELS = ("yes", "no", "maybe")
LETTERS = ("A", "B", "C")


def _read_json_object(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}:{e.lineno}: not valid JSON ({e.msg}); re-download the original file") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object keyed by PMID, got {type(data).__name__}")
    return data


def load_pubmedqa(data_dir: str | Path, split: str = "test") -> LoadedSplit:
    if split not in ("test", "train"):
        raise ValueError(f"PubMedQA split {split!r} is not 'test' or 'train'")
    data_dir = Path(data_dir)
    pqal_path = require_file(data_dir / ORI_PQAL, "pubmedqa", ORI_PQAL)
    truth_path = require_file(data_dir / TEST_GROUND_TRUTH, "pubmedqa", TEST_GROUND_TRUTH)
    pqal, truth = _read_json_object(pqal_path), _read_json_object(truth_path)
    out = LoadedSplit(task="pubmedqa", split=split, source=f"{pqal_path} + {truth_path}")
    if split == "test":
        pmids = list(truth)
    else:
        pmids = [p for p in pqal if p not in truth]
    for pmid in pmids:
        rec = pqal.get(pmid)
        if not isinstance(rec, dict):
            out.malformed.append(Malformed(f"{truth_path}:{pmid}", f"PMID not in {ORI_PQAL}"))
            continue
        where = f"{pqal_path}:{pmid}"
        label = truth[pmid] if split == "test" else rec.get("final_decision")
        contexts = rec.get("CONTEXTS")
        if not nonempty_str(rec.get("QUESTION")):
            out.malformed.append(Malformed(where, "missing or empty 'QUESTION'"))
        elif not isinstance(contexts, list) or not contexts or not all(nonempty_str(c) for c in contexts):
            out.malformed.append(Malformed(where, "'CONTEXTS' must be a non-empty list of strings"))
        elif label not in LABELS:
            source = truth_path if split == "test" else pqal_path
            out.malformed.append(Malformed(f"{source}:{pmid}", f"label {label!r} is not one of {list(LABELS)}"))
        else:
            out.items.append(MultipleChoiceItem(
                id=str(pmid), question=rec["QUESTION"].strip(), letters=LETTERS, texts=LABELS,
                gold=LABELS.index(label), contexts=tuple(c.strip() for c in contexts),
            ))
    disagree = sum(1 for it in out.items if pqal[it.id].get("final_decision") not in (None, LABELS[it.gold]))
    if disagree:
        out.notes.append(f"{disagree} test labels differ from ori_pqal's final_decision; the ground-truth file wins")
    return out
