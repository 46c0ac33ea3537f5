"""Conversation data (ChatDoctor / MedAlpaca style) with instructions drawn from a pool of paraphrases.

The original files are a JSON array or JSON lines of ``{"instruction", "input", "output"}``. So that
the model does not overfit one wording, each record's instruction is replaced by one drawn from its
pool, by ``(seed, record id, epoch)`` alone: deterministic under a seed, different across records, and
redrawable per epoch at load time from the pools saved next to the data.

Instruction pool file formats:

- plain text, one instruction per line: one pool, used for every record;
- a JSON list of strings: the same;
- a JSON object ``{seed instruction: [paraphrase, ...]}``: a record whose instruction is a key draws
  from that key's list plus the key itself; other records keep their instruction (counted).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from megapmc.sft.sources.common import InstructionRecord, Problems, iter_instruction_items, seeded_choice
from megapmc.utils.io import write_json_atomic

DEFAULT_POOL = "__all__"


@dataclass
class InstructionPools:
    """Named lists of interchangeable instructions; ``DEFAULT_POOL`` applies to every record."""

    pools: dict[str, list[str]] = field(default_factory=dict)

    def __post_init__(self):
        for name, options in self.pools.items():
            if not options or not all(isinstance(o, str) and o.strip() for o in options):
                raise ValueError(f"instruction pool {name[:60]!r} must be a non-empty list of non-empty strings")

    @classmethod
    def load(cls, path: str | Path) -> "InstructionPools":
        """Read a pool file in any of the formats in the module docstring."""
        path = Path(path)
        text = path.read_text(encoding="utf-8")
        stripped = text.lstrip()
        if stripped.startswith(("[", "{")):
            try:
                data = json.loads(text)
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}:{e.lineno}: invalid JSON in the instruction pool ({e.msg})") from None
            if isinstance(data, list):
                return cls({DEFAULT_POOL: _dedup(data, path)})
            for seed, paraphrases in data.items():
                if not isinstance(paraphrases, list):
                    raise ValueError(f"{path}: the pool of {seed[:60]!r} must be a list of paraphrases, "
                                     f"got {type(paraphrases).__name__}")
            return cls({seed: _dedup([seed, *paraphrases], path) for seed, paraphrases in data.items()})
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        if not lines:
            raise ValueError(f"{path}: the instruction pool is empty")
        return cls({DEFAULT_POOL: _dedup(lines, path)})

    def save(self, path: str | Path) -> None:
        """Write as JSON (the saved form maps pool names to their full lists), atomically."""
        write_json_atomic(path, {"pools": self.pools}, indent=1)

    @classmethod
    def load_saved(cls, path: str | Path) -> "InstructionPools":
        return cls(json.loads(Path(path).read_text(encoding="utf-8"))["pools"])

    def pool_for(self, instruction: str) -> str | None:
        if instruction in self.pools:
            return instruction
        return DEFAULT_POOL if DEFAULT_POOL in self.pools else None

    def draw(self, pool: str, seed: int, record_id: str, epoch: int = 0) -> str:
        if pool not in self.pools:
            raise KeyError(f"instruction pool {pool[:60]!r} is not in the saved pools")
        return seeded_choice(self.pools[pool], seed, (record_id, epoch))


def _dedup(items: list, path: Path) -> list[str]:
    out = []
    for item in items:
        if not isinstance(item, str):
            raise ValueError(f"{path}: instruction pool entries must be strings, got {type(item).__name__}")
        if item.strip() and item.strip() not in out:
            out.append(item.strip())
    return out


def load_conversations(path: str | Path, pools: InstructionPools | None, problems: Problems, *,
                       seed: int = 1234, source: str = "conversations") -> Iterator[InstructionRecord]:
    """Records of one conversation file, instructions drawn from ``pools`` (kept when ``None``).

    ``id`` is the item's own ``id`` when it has one, else ``<file stem>-<index>``.
    """
    path = Path(path)
    for index, item, instruction, input_text, output in iter_instruction_items(path, source, problems):
        record_id = str(item.get("id", f"{path.stem}-{index}"))
        pool = pools.pool_for(instruction.strip()) if pools is not None else None
        if pool is not None:
            instruction = pools.draw(pool, seed, record_id)
        yield InstructionRecord(instruction.strip(), input_text.strip(), output.strip(), source, record_id, pool)
