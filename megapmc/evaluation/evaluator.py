"""Run the chosen tasks on one backend and write the report: what ``tools/evaluate.py`` calls."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from megapmc.evaluation.backends import CausalLMBackend
from megapmc.evaluation.fewshot import FewShotSampler
from megapmc.evaluation.report import TaskResult, markdown_table, summarise, write_report, write_samples
from megapmc.evaluation.scoring import score_generate, score_loglik
from megapmc.evaluation.tasks import get_task

MODES = ("loglik", "generate")
DEFAULT_TASKS = ("pubmedqa", "medmcqa", "medqa")


@dataclass
class EvalConfig:
    data_dir: str
    output_dir: str
    tasks: tuple[str, ...] = DEFAULT_TASKS
    mode: str = "loglik"
    num_fewshot: int = 0
    limit: int | None = None
    max_new_tokens: int = 64
    seed: int = 1234

    def __post_init__(self):
        self.tasks = tuple(self.tasks)
        if not self.tasks:
            raise ValueError("--tasks is empty; name at least one of pubmedqa, medmcqa, medqa")
        for name in self.tasks:
            get_task(name)
        if self.mode not in MODES:
            raise ValueError(f"--mode {self.mode!r} is not one of {', '.join(MODES)}")
        if self.num_fewshot < 0:
            raise ValueError(f"--num-fewshot must be >= 0, got {self.num_fewshot}")
        if self.limit is not None and self.limit <= 0:
            raise ValueError(f"--limit must be positive, got {self.limit}")
        if self.max_new_tokens <= 0:
            raise ValueError(f"--max-new-tokens must be positive, got {self.max_new_tokens}")
        if not Path(self.data_dir).is_dir():
            raise FileNotFoundError(f"--data-dir {self.data_dir}: not a directory")


def evaluate(backend: CausalLMBackend, config: EvalConfig, write: bool = True) -> list[TaskResult]:
    """Score every task; with ``write`` (rank 0 only under torchrun) write the samples and the report."""
    results = []
    for name in config.tasks:
        task = get_task(name)
        split = task.load(config.data_dir, "test")
        items = split.items[: config.limit] if config.limit else split.items
        train = task.load(config.data_dir, "train").items if config.num_fewshot else []
        fewshot = FewShotSampler(train, config.num_fewshot, config.seed)
        if config.mode == "loglik":
            item_results = score_loglik(backend, task, items, fewshot)
        else:
            item_results = score_generate(backend, task, items, fewshot, config.max_new_tokens)
        results.append(summarise(split, item_results, config.mode, config.num_fewshot))
        if write:
            Path(config.output_dir).mkdir(parents=True, exist_ok=True)
            write_samples(Path(config.output_dir), name, item_results)
    if write:
        write_report(config.output_dir, results, dataclasses.asdict(config))
    return results


__all__ = ["EvalConfig", "evaluate", "markdown_table", "MODES", "DEFAULT_TASKS"]
