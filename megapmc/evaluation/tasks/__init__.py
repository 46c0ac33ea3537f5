"""The benchmarks: loaders of the original files plus the prompts each is scored with.

``TASKS[name]`` describes one benchmark; ``get_task(name)`` raises a clear error for unknown names.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Callable

from megapmc.evaluation import prompts
from megapmc.evaluation.tasks.common import LoadedSplit, Malformed, MultipleChoiceItem
from megapmc.evaluation.tasks.medmcqa import load_medmcqa
from megapmc.evaluation.tasks.medqa import load_medqa
from megapmc.evaluation.tasks.pubmedqa import load_pubmedqa
from megapmc.sft import template


@dataclass(frozen=True)
class Task:
    """``load(data_dir, split)``; ``harness_prompt``/``harness_choices``: the lm-evaluation-harness
    task ``harness_name`` (log-likelihood mode); ``instruction``: PMC-LLaMA's instruction (generation)."""

    name: str
    harness_name: str
    load: Callable[[str | Path, str], LoadedSplit]
    harness_prompt: Callable[[MultipleChoiceItem], str]
    harness_choices: Callable[[MultipleChoiceItem], list[str]]
    instruction: str


TASKS: dict[str, Task] = {
    "pubmedqa": Task("pubmedqa", "pubmedqa", load_pubmedqa, prompts.harness_pubmedqa, prompts.text_choices,
                     template.PUBMEDQA_INSTRUCTION),
    "medmcqa": Task("medmcqa", "medmcqa", load_medmcqa, prompts.harness_medmcqa, prompts.letter_choices,
                    template.MCQ_INSTRUCTION),
    "medqa": Task("medqa", "medqa_4options", partial(load_medqa, num_options=4), prompts.harness_medqa,
                  prompts.letter_choices, template.MCQ_INSTRUCTION),
    "medqa_5options": Task("medqa_5options", "medqa_4options (5-option data)", partial(load_medqa, num_options=5),
                           prompts.harness_medqa, prompts.letter_choices, template.MCQ_INSTRUCTION),
}


def get_task(name: str) -> Task:
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r} in --tasks; choose from {', '.join(TASKS)}")
    return TASKS[name]


__all__ = ["TASKS", "Task", "get_task", "LoadedSplit", "Malformed", "MultipleChoiceItem"]
