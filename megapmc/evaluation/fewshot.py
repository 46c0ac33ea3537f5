"""k-shot examples drawn from a task's training split, reproducible from a seed.

Each test item gets its own draw from ``random.Random(f"{seed}:{item.id}")``, so an item's examples do
not depend on ``--limit``, the item order or the other tasks, and a rerun gives the same prompts.
"""
from __future__ import annotations

import random
from typing import Callable

from megapmc.evaluation.prompts import FEWSHOT_DELIMITER
from megapmc.benchmarks import MultipleChoiceItem


class FewShotSampler:
    def __init__(self, train_items: list[MultipleChoiceItem], num_fewshot: int, seed: int = 1234):
        if num_fewshot < 0:
            raise ValueError(f"--num-fewshot must be >= 0, got {num_fewshot}")
        if num_fewshot and len(train_items) < num_fewshot + 1:
            raise ValueError(
                f"--num-fewshot {num_fewshot} needs at least {num_fewshot + 1} training items, "
                f"the training split has {len(train_items)}"
            )
        self.train_items = train_items
        self.num_fewshot = num_fewshot
        self.seed = seed

    def examples(self, item: MultipleChoiceItem) -> list[MultipleChoiceItem]:
        """``num_fewshot`` training items for ``item``, never the item itself (same id and question)."""
        if not self.num_fewshot:
            return []
        rng = random.Random(f"{self.seed}:{item.id}")
        # One spare, dropped if it is the test item (a train split may hold a copy of it).
        drawn = rng.sample(self.train_items, self.num_fewshot + 1)
        return [ex for ex in drawn if ex.question != item.question][: self.num_fewshot]

    def prefix(self, item: MultipleChoiceItem, render: Callable[[MultipleChoiceItem], str]) -> str:
        """The rendered examples joined by the few-shot delimiter, ending with one (empty if zero-shot)."""
        return "".join(render(ex) + FEWSHOT_DELIMITER for ex in self.examples(item))
