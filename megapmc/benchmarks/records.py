"""What every benchmark reader returns: multiple-choice items plus an account of what was skipped.

Texts are kept exactly as the file holds them (no stripping): lm-evaluation-harness renders the raw
fields, and a trailing space in an option changes the tokens the model scores.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional


class BenchmarkFileError(ValueError):
    """A benchmark file that cannot be used at all (missing, empty, unlabelled, not UTF-8, unknown
    layout) or, under ``strict``, a malformed record. The message names the file (and line)."""


@dataclass(frozen=True)
class MultipleChoiceItem:
    """One benchmark question.

    ``letters[i]`` labels option ``i`` (``A``–``E``); ``texts[i]`` is its text (for PubMedQA the
    options are ``yes``/``no``/``maybe`` and the letters ``A``–``C`` exist only for the instruction
    prompt). ``gold`` indexes both. ``contexts`` holds PubMedQA's abstract sections; ``explanation``
    the dataset's own rationale (MedMCQA ``exp``, PubMedQA's long answer), for instruction data.
    """

    id: str
    question: str
    letters: tuple[str, ...]
    texts: tuple[str, ...]
    gold: int
    contexts: tuple[str, ...] = ()
    explanation: Optional[str] = None

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
    """A record the reader could not use: where it is and why."""

    location: str  # "path:line" or "path:key"
    reason: str


@dataclass
class LoadedSplit:
    """The items of one file (or file pair), the records that were skipped, and notes worth printing.
    ``layout`` names the format recognised (``medqa-original``, ``medqa-gbaker``, ...)."""

    task: str
    split: str
    source: str
    layout: str = ""
    items: list[MultipleChoiceItem] = field(default_factory=list)
    malformed: list[Malformed] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def reject(self, location: str, reason: str, strict: bool) -> None:
        """Record a malformed record; under ``strict`` stop at it."""
        if strict:
            raise BenchmarkFileError(f"{location}: {reason} (--strict stops at the first malformed record)")
        self.malformed.append(Malformed(location, reason))

    def require_items(self) -> "LoadedSplit":
        """Refuse a file that yielded no usable item: a 0.00% row would hide it."""
        if not self.items:
            why = f"; first problem: {self.malformed[0].location}: {self.malformed[0].reason}" if self.malformed else ""
            raise BenchmarkFileError(f"{self.source}: no usable {self.task} items ({len(self.malformed)} malformed){why}")
        return self


def nonempty_str(value) -> bool:
    return isinstance(value, str) and bool(value.strip())
