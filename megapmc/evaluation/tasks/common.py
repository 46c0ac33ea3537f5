"""What every benchmark loader returns: multiple-choice items plus an account of what was skipped."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator


@dataclass(frozen=True)
class MultipleChoiceItem:
    """One benchmark question.

    ``letters[i]`` labels option ``i`` (``A``–``E``); ``texts[i]`` is its text (for PubMedQA the
    options are ``yes``/``no``/``maybe`` and the letters ``A``–``C`` exist only for the instruction
    prompt). ``gold`` indexes both. ``contexts`` holds PubMedQA's abstract sections.
    """

    id: str
    question: str
    letters: tuple[str, ...]
    texts: tuple[str, ...]
    gold: int
    contexts: tuple[str, ...] = ()

    def __post_init__(self):
        if len(self.letters) != len(self.texts):
            raise ValueError(f"item {self.id}: {len(self.letters)} letters for {len(self.texts)} options")
        if not 0 <= self.gold < len(self.texts):
            raise ValueError(f"item {self.id}: gold index {self.gold} out of range")

    @property
    def gold_letter(self) -> str:
        return self.letters[self.gold]


@dataclass(frozen=True)
class Malformed:
    """A record the loader could not use: where it is and why."""

    location: str  # "path:line" or "path:key"
    reason: str


@dataclass
class LoadedSplit:
    """The items of one split, the records that were skipped, and notes worth printing."""

    task: str
    split: str
    source: str
    items: list[MultipleChoiceItem] = field(default_factory=list)
    malformed: list[Malformed] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def require_file(path: Path, task: str, hint: str) -> Path:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not found; {task} expects {hint} under --data-dir")
    return path


def read_json_lines(path: Path, split: LoadedSplit) -> Iterator[tuple[int, dict]]:
    """Yield ``(line_number, record)`` for each JSON object line; bad lines go to ``split.malformed``."""
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                split.malformed.append(Malformed(f"{path}:{lineno}", f"not valid JSON ({e.msg})"))
                continue
            if not isinstance(record, dict):
                split.malformed.append(Malformed(f"{path}:{lineno}", "not a JSON object"))
                continue
            yield lineno, record


def nonempty_str(value) -> bool:
    return isinstance(value, str) and bool(value.strip())
