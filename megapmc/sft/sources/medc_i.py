"""The released MedC-I file, taken as it is: ``release.json`` of ``axiong/pmc_llama_instructions``, a JSON
array (or JSON lines) of ``{"instruction", "input", "output", "source", "sample_id"}``.

The release's text is kept byte for byte (no stripping: its MCQ inputs end with a newline that the
evaluation prompt has too). ``source`` becomes ``medc_i`` (so caps and weights apply to the file as a
whole) and the published source names the record: ``<source>-<sample_id>``. The release numbers only
some parts (``medqa_train`` rows count 0, 1, ...; several paraphrased rows of one question share its
number) and leaves ``sample_id`` null elsewhere (``medmcqa``, ``pubmedqa.ori_pqaa``, ``umls_relation``):
such a row is named ``<source>-h<hash of its text>``, stable across runs and file orders and distinct
per row, so a weight below 1 keeps a share of them rather than all or none.
"""
from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Iterator

from megapmc.sft.sources.common import InstructionRecord, Problems, iter_instruction_items, stable_hash


def medc_i_record_id(published: str, sample_id: object, instruction: str, input_text: str, output: str) -> str:
    if sample_id is None or sample_id == "":
        return f"{published}-h{stable_hash(0, published, instruction, input_text, output):016x}"
    return f"{published}-{sample_id}"


def load_medc_i(path: str | Path, problems: Problems, stats: Counter | None = None,
                source: str = "medc_i") -> Iterator[InstructionRecord]:
    stats = Counter() if stats is None else stats
    path = Path(path)
    for _, item, instruction, input_text, output in iter_instruction_items(path, source, problems):
        published = item.get("source")
        published = published if isinstance(published, str) and published else "unknown"
        stats[f"published:{published}"] += 1
        sample_id = item.get("sample_id")
        if sample_id is None:
            stats["null_sample_id"] += 1
        yield InstructionRecord(instruction, input_text, output, source,
                                medc_i_record_id(published, sample_id, instruction, input_text, output))
