"""The released MedC-I file, taken as it is: a JSON array (or JSON lines) of
``{"instruction", "input", "output", "source", "sample_id"}`` as published with PMC-LLaMA.

Records keep their text; ``source`` becomes ``medc_i`` (so caps and weights apply to the file as a
whole) and the published source and sample id make the record id ``<source>-<sample_id>``.
"""
from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Iterator

from megapmc.sft.sources.common import InstructionRecord, Problems, iter_instruction_items


def load_medc_i(path: str | Path, problems: Problems, stats: Counter | None = None,
                source: str = "medc_i") -> Iterator[InstructionRecord]:
    stats = Counter() if stats is None else stats
    path = Path(path)
    for index, item, instruction, input_text, output in iter_instruction_items(path, source, problems):
        published = item.get("source")
        published = published if isinstance(published, str) and published else "unknown"
        stats[f"published:{published}"] += 1
        sample_id = item.get("sample_id", index)
        yield InstructionRecord(instruction.strip(), input_text.strip(), output.strip(), source,
                                f"{published}-{sample_id}")
