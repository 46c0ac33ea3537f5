"""The benchmarks as evaluation tasks: which files (``megapmc.benchmarks``) and which prompts.

``TASKS[name]`` describes one benchmark; ``get_task(name)`` raises a clear error for unknown names.
``task.load(data_dir, split, eval_file=...)`` finds and reads a split through ``megapmc.benchmarks``,
the one owner of the file formats.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from megapmc.benchmarks import (
    BenchmarkFileError, LoadedSplit, Malformed, MultipleChoiceItem, files_for, read_medmcqa, read_medqa,
    read_pubmedqa,
)
from megapmc.evaluation import prompts
from megapmc.sft import template


@dataclass(frozen=True)
class Task:
    """``harness_prompt``/``harness_choices``: the lm-evaluation-harness task ``harness_name``
    (log-likelihood mode); ``instruction``: PMC-LLaMA's instruction (generation)."""

    name: str
    harness_name: str
    harness_prompt: Callable[[MultipleChoiceItem], str]
    harness_choices: Callable[[MultipleChoiceItem], list[str]]
    instruction: str

    def load(self, data_dir: str | Path | None, split: str = "test", eval_file: str | Path | None = None,
             strict: bool = False, cop_base: int | None = None) -> LoadedSplit:
        """The scored split (``test``; MedMCQA's dev) or the ``train`` split for few-shot examples."""
        if split not in ("test", "train"):
            raise ValueError(f"{self.name}: split {split!r} is not 'test' or 'train'")
        files = files_for(self.name, data_dir, eval_file)
        path = files.eval
        if split == "train":
            if self.name == "pubmedqa" and files.ground_truth:
                return read_pubmedqa(files.eval, files.ground_truth, "train", strict)  # PQA-L minus the test PMIDs
            if files.train is None:
                raise FileNotFoundError(f"{self.name}: --num-fewshot needs a training split and none was found "
                                        f"under --data-dir {data_dir} (a file named *train*)")
            path = files.train
        if self.name == "pubmedqa":
            return read_pubmedqa(path, files.ground_truth if split == "test" else None, split, strict)
        if self.name == "medmcqa":
            return read_medmcqa(path, split, cop_base, strict)
        loaded = read_medqa(path, split, strict=strict)
        if loaded.task != self.name:
            raise BenchmarkFileError(f"{path}: {len(loaded.items[0].texts)}-option MedQA, which is task "
                                     f"{loaded.task}, not {self.name}")
        return loaded


TASKS: dict[str, Task] = {
    "pubmedqa": Task("pubmedqa", "pubmedqa", prompts.harness_pubmedqa, prompts.text_choices,
                     template.PUBMEDQA_INSTRUCTION),
    "medmcqa": Task("medmcqa", "medmcqa", prompts.harness_medmcqa, prompts.letter_choices, template.MCQ_INSTRUCTION),
    "medqa": Task("medqa", "medqa_4options", prompts.harness_medqa, prompts.letter_choices, template.MCQ_INSTRUCTION),
    "medqa_5options": Task("medqa_5options", "medqa_4options (5-option data)", prompts.harness_medqa,
                           prompts.letter_choices, template.MCQ_INSTRUCTION),
}


def get_task(name: str) -> Task:
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r} in --tasks; choose from {', '.join(TASKS)}")
    return TASKS[name]


__all__ = ["TASKS", "Task", "get_task", "BenchmarkFileError", "LoadedSplit", "Malformed", "MultipleChoiceItem"]
