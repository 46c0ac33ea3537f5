"""Find each benchmark's files anywhere under a data directory, whatever layout they were downloaded in.

Every ``.json``/``.jsonl``/``.parquet`` file below the directory is recognised by its name
(``ori_pqal.json``, ``test_ground_truth.json``) or by the fields of its first record (see the readers'
``*_layout``), and its split by its name (``test``, ``dev``/``validation``, ``train``). For each task the
best candidate is chosen (the split it is reported on, then the shallowest path) and the others are
listed, so the printed summary says exactly which file was scored.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from megapmc.benchmarks.medmcqa import medmcqa_layout
from megapmc.benchmarks.medqa import medqa_layout
from megapmc.benchmarks.pubmedqa import pubmedqa_layout
from megapmc.benchmarks.rows import first_record

SUFFIXES = (".json", ".jsonl", ".parquet")
TASK_NAMES = ("pubmedqa", "medmcqa", "medqa", "medqa_5options")
# The split each benchmark is reported on, in order of preference.
EVAL_SPLITS = {"medqa": ("test",), "medqa_5options": ("test",), "medmcqa": ("dev", "test"),
               "pubmedqa": ("test", None)}


@dataclass
class TaskFiles:
    """The files of one task: ``eval`` (the scored split), ``train`` (few-shot), PubMedQA's
    ``ground_truth``, and the other candidates seen."""

    task: str
    eval: Path | None = None
    train: Path | None = None
    ground_truth: Path | None = None
    others: list[Path] = field(default_factory=list)

    def describe(self) -> str:
        if self.eval is None:
            return f"{self.task}: no file found"
        parts = [f"{self.task}: {self.eval}"]
        if self.ground_truth:
            parts.append(f"ground truth {self.ground_truth}")
        if self.train:
            parts.append(f"train {self.train}")
        if self.others:
            parts.append(f"also seen (not used): {', '.join(map(str, self.others))}")
        return "; ".join(parts)


def split_of(path: Path) -> str | None:
    stem = path.name.lower()
    for key, split in (("test", "test"), ("validation", "dev"), ("dev", "dev"), ("train", "train")):
        if key in stem:
            return split
    return None


def classify(path: Path) -> str | None:
    """The task a file belongs to (``pubmedqa_truth`` for the ground-truth file), or None."""
    if path.name == "test_ground_truth.json":
        return "pubmedqa_truth"
    if path.name == "ori_pqal.json":
        return "pubmedqa"
    if path.name in ("ori_pqaa.json", "ori_pqau.json"):  # artificial/unlabelled PubMedQA: not evaluation data
        return None
    record = first_record(path)
    layout = medqa_layout(record)
    if layout == "medqa-original":
        return "medqa_5options" if isinstance(record.get("options"), dict) and len(record["options"]) == 5 else "medqa"
    if layout == "medqa-gbaker":
        return "medqa"
    if medmcqa_layout(record):
        return "medmcqa"
    if pubmedqa_layout(record):
        return "pubmedqa"
    return None


def find_benchmark_files(data_dir: str | Path) -> dict[str, TaskFiles]:
    """``{task: TaskFiles}`` for every task in ``TASK_NAMES`` (``eval`` None where nothing was found)."""
    root = Path(data_dir)
    candidates: dict[str, list[Path]] = {name: [] for name in (*TASK_NAMES, "pubmedqa_truth")}
    for path in sorted(root.rglob("*"), key=lambda p: (len(p.relative_to(root).parts), str(p))):
        if path.suffix not in SUFFIXES or not path.is_file() or any(
                part.startswith(".") for part in path.relative_to(root).parts):
            continue
        task = classify(path)
        if task is not None:
            candidates[task].append(path)
    found = {}
    for task in TASK_NAMES:
        files = TaskFiles(task)
        paths = candidates[task]
        for split in EVAL_SPLITS[task]:
            match = [p for p in paths if split_of(p) == split or (split is None and p.name == "ori_pqal.json")]
            if task == "pubmedqa" and split == "test":  # ori_pqal.json + its ground truth is the test split
                match = [p for p in paths if p.name == "ori_pqal.json" and candidates["pubmedqa_truth"]] + match
            if match:
                files.eval = match[0]
                break
        if task == "pubmedqa" and files.eval is None and paths:
            files.eval = paths[0]  # HF pqa_labeled keeps all 1,000 labelled items in its "train" split
        files.train = next((p for p in paths if split_of(p) == "train" and p != files.eval), None)
        if task == "pubmedqa" and files.eval is not None and candidates["pubmedqa_truth"]:
            files.ground_truth = candidates["pubmedqa_truth"][0]
        files.others = [p for p in paths if p not in (files.eval, files.train)]
        found[task] = files
    return found


def files_for(task: str, data_dir: str | Path | None, eval_file: str | Path | None = None) -> TaskFiles:
    """The files of ``task``: ``eval_file`` when given (a PubMedQA file finds ``test_ground_truth.json``
    beside it), else discovery under ``data_dir``. Raises naming what is missing."""
    if eval_file is not None:
        eval_file = Path(eval_file)
        files = TaskFiles(task, eval=eval_file)
        if task == "pubmedqa" and (eval_file.parent / "test_ground_truth.json").is_file():
            files.ground_truth = eval_file.parent / "test_ground_truth.json"
        if data_dir is not None and Path(data_dir).is_dir():
            files.train = find_benchmark_files(data_dir)[task].train
        return files
    files = find_benchmark_files(data_dir)[task]
    if files.eval is None:
        raise FileNotFoundError(
            f"{task}: no file found under --data-dir {data_dir}; expected e.g. {EXAMPLES[task]} "
            f"(anywhere below it), or name it with --{task.split('_')[0]}-file"
        )
    return files


EXAMPLES = {
    "medqa": "US/4_options/phrases_no_exclude_test.jsonl or the GBaker HF export's test split",
    "medqa_5options": "US/test.jsonl (5 options)",
    "medmcqa": "dev.json or the HF validation split (.jsonl/.parquet)",
    "pubmedqa": "ori_pqal.json + test_ground_truth.json, or PQA-L rows (.jsonl/.parquet)",
}
