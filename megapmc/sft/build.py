"""Build the MedC-I instruction data: every source → caps → mixing weights → one JSONL file.

Output records are ``{"instruction", "input", "output", "source", "id"}`` (plus ``instruction_pool`` for
records whose instruction was drawn from a pool). Next to ``OUT.jsonl`` the build writes
``OUT.summary.json`` (records and tokens per source, bad records) and, when instructions came from pools,
``OUT.pools.json`` so the instruction drawing can be redone per epoch when the data is tokenised.

Per source, in order: bad items are logged (``Problems``); a **cap** keeps a seeded sample of at most N
records (by a hash of the record id, so the same records whatever the file order); a **weight** ``w``
writes each kept record ``floor(w)`` times plus once more with probability ``w - floor(w)`` (again by
a seeded hash); a repeated pooled record gets a fresh instruction draw. The benchmark sources write a
short-answer row and a rationale row per question (``megapmc.sft.sources.rationale_qa``), whose
instructions are drawn from a pool too when ``--instruction-pool`` has one keyed by the benchmark
instruction (as the release's paraphrased rows of one question). The sources are finally interleaved at random (seeded) in proportion to their sizes, so any prefix of the file is a mixture.
"""
from __future__ import annotations

import dataclasses
import json
import math
import random
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator

from tqdm import tqdm

from megapmc.sft.sources.common import BottomK, InstructionRecord, Problems, stable_hash
from megapmc.sft.sources.conversations import DEFAULT_POOL, InstructionPools, load_conversations
from megapmc.sft.sources.medc_i import load_medc_i
from megapmc.sft.sources.rationale_qa import (
    load_medmcqa,
    load_medqa,
    load_pubmedqa,
    load_pubmedqa_ids,
    load_rationales,
)
from megapmc.sft.sources.umls import UmlsConfig, load_umls
from megapmc.sft.template import build_prompt
from megapmc.utils.io import replace, temp_path, write_json_atomic

SOURCES = ("conversations", "medqa", "medmcqa", "pubmedqa", "umls", "medc_i")


@dataclass
class BuildConfig:
    """Where the original files are and how much of each source to take."""

    conversations: list[str] = field(default_factory=list)
    instruction_pool: str | None = None
    medqa: list[str] = field(default_factory=list)
    medmcqa: list[str] = field(default_factory=list)
    medmcqa_cop_base: int | None = None  # None: detected per file
    pubmedqa: list[str] = field(default_factory=list)
    pubmedqa_exclude: list[str] = field(default_factory=list)  # split files whose PMIDs are left out
    rationales: list[str] = field(default_factory=list)
    umls_dir: str | None = None
    umls: UmlsConfig = field(default_factory=UmlsConfig)
    medc_i: list[str] = field(default_factory=list)
    caps: dict[str, int] = field(default_factory=dict)
    weights: dict[str, float] = field(default_factory=dict)
    # Task-specific fine-tuning: the benchmarks' short-answer rows alone, each with the evaluation's own
    # instruction (no rationale rows, no paraphrase draws).
    answers_only: bool = False
    seed: int = 1234
    strict: bool = False

    def __post_init__(self):
        for kind, table in (("cap", self.caps), ("weight", self.weights)):
            for name, value in table.items():
                if name not in SOURCES:
                    raise ValueError(f"--{kind} {name}=...: unknown source; choose from {', '.join(SOURCES)}")
                if value < 0:
                    raise ValueError(f"--{kind} {name}={value}: must be >= 0")
        if self.rationales and not (self.medqa or self.medmcqa or self.pubmedqa):
            raise ValueError("--rationales needs at least one of --medqa, --medmcqa, --pubmedqa")
        if self.instruction_pool and not (self.conversations or self.medqa or self.medmcqa or self.pubmedqa):
            raise ValueError("--instruction-pool needs --conversations or a QA source (--medqa, --medmcqa, --pubmedqa)")
        if self.answers_only and self.rationales:
            raise ValueError("--answers-only writes no rationale rows; drop --rationales")
        if self.medmcqa_cop_base not in (None, 0, 1):
            raise ValueError(f"--medmcqa-cop-base must be 0 or 1, got {self.medmcqa_cop_base}")
        paths = [*self.conversations, *self.medqa, *self.medmcqa, *self.pubmedqa, *self.pubmedqa_exclude,
                 *self.rationales, *self.medc_i, *([self.instruction_pool] if self.instruction_pool else [])]
        for path in paths:
            if not Path(path).is_file():
                raise FileNotFoundError(f"{path}: input file not found")
        if self.umls_dir is not None and not Path(self.umls_dir).is_dir():
            raise FileNotFoundError(f"--umls-dir {self.umls_dir}: not a directory")
        if not any(paths) and self.umls_dir is None:
            raise ValueError("no input: give at least one of --conversations, --medqa, --medmcqa, "
                             "--pubmedqa, --umls-dir, --medc-i")


@dataclass
class SourceSummary:
    read: int = 0
    bad: int = 0
    kept: int = 0  # after the cap
    written: int = 0  # after the weight
    tokens: int = 0  # prompt + response + BOS/EOS, when a tokenizer is given
    details: dict[str, int] = field(default_factory=dict)


@dataclass
class BuildSummary:
    output: str
    sources: dict[str, SourceSummary]
    problems: list[str]

    @property
    def records(self) -> int:
        return sum(s.written for s in self.sources.values())

    def to_json(self) -> dict:
        return {
            "output": self.output,
            "records": self.records,
            "tokens": sum(s.tokens for s in self.sources.values()),
            "sources": {k: vars(v) for k, v in self.sources.items()},
            "bad_records": self.problems,
        }

    def table(self) -> str:
        rows = [f"{'source':<14}{'read':>10}{'bad':>8}{'kept':>10}{'written':>10}{'tokens':>14}"]
        for name, s in self.sources.items():
            rows.append(f"{name:<14}{s.read:>10}{s.bad:>8}{s.kept:>10}{s.written:>10}{s.tokens:>14}")
        total = list(self.sources.values())
        rows.append(f"{'total':<14}{sum(s.read for s in total):>10}{sum(s.bad for s in total):>8}"
                    f"{sum(s.kept for s in total):>10}{self.records:>10}{sum(s.tokens for s in total):>14}")
        return "\n".join(rows)


def _source_streams(config: BuildConfig, problems: Problems, pools: InstructionPools | None,
                    stats: dict[str, Counter]) -> dict[str, Callable[[], Iterator[InstructionRecord]]]:
    """Per active source, a function that streams its records (read lazily, one source at a time)."""

    def chain(loader, paths, **kwargs):
        return lambda: (r for p in paths for r in loader(p, **kwargs))

    def pooled(stream):  # QA rows draw their instruction from its paraphrase pool, when one is given
        if pools is None or config.answers_only:
            return stream
        return lambda: draw_pooled_instructions(stream(), pools, config.seed)

    streams = {}
    if config.conversations:
        streams["conversations"] = chain(load_conversations, config.conversations, pools=pools,
                                         problems=problems, seed=config.seed)
    if config.medqa or config.medmcqa or config.pubmedqa:
        rationales: dict[str, str] = {}
        for path in config.rationales:
            rationales.update(load_rationales(path, problems))
        qa = dict(rationales=rationales, problems=problems, answers_only=config.answers_only)
        if config.medqa:
            streams["medqa"] = pooled(chain(load_medqa, config.medqa, stats=stats["medqa"], **qa))
        if config.medmcqa:
            streams["medmcqa"] = pooled(chain(load_medmcqa, config.medmcqa, stats=stats["medmcqa"],
                                              cop_base=config.medmcqa_cop_base, **qa))
        if config.pubmedqa:
            exclude = set().union(*(load_pubmedqa_ids(p) for p in config.pubmedqa_exclude))
            streams["pubmedqa"] = pooled(chain(load_pubmedqa, config.pubmedqa, stats=stats["pubmedqa"],
                                               exclude=exclude, **qa))
    if config.umls_dir is not None:
        streams["umls"] = lambda: load_umls(config.umls_dir, config.umls, problems, stats["umls"])
    if config.medc_i:
        streams["medc_i"] = chain(load_medc_i, config.medc_i, problems=problems, stats=stats["medc_i"])
    return streams


def draw_pooled_instructions(records: Iterable[InstructionRecord], pools: InstructionPools,
                             seed: int) -> Iterator[InstructionRecord]:
    """Records whose instruction seeds a named pool get a paraphrase drawn by ``(seed, id)``, and keep the
    pool's name so the drawing is redone per epoch; the others pass unchanged (a bare list of
    instructions, meant for conversations, never replaces a benchmark instruction)."""
    for record in records:
        if record.instruction in pools.pools and record.instruction != DEFAULT_POOL:
            record = dataclasses.replace(record, instruction=pools.draw(record.instruction, seed, record.id),
                                         instruction_pool=record.instruction)
        yield record


def apply_cap(records: Iterable[InstructionRecord], cap: int | None, seed: int) -> Iterator[InstructionRecord]:
    """At most ``cap`` records, a seeded sample (all of them when ``cap`` is None).

    The sample is keyed on the id and the text, so records that share an id (two files numbered alike,
    or the release's paraphrased rows of one question) are all eligible; an exact duplicate counts once.
    """
    if cap is None:
        yield from records
        return
    sample = BottomK(cap, seed)
    for record in records:
        sample.offer((record.id, record.instruction, record.input, record.output), record)
    yield from sample.values()


def apply_weight(records: Iterable[InstructionRecord], weight: float, seed: int,
                 pools: InstructionPools | None) -> Iterator[InstructionRecord]:
    """Each record ``floor(weight)`` times plus once more with probability ``weight - floor(weight)``."""
    whole, frac = math.floor(weight), weight - math.floor(weight)
    for record in records:
        copies = whole + (stable_hash(seed, "weight", record.id) / 2**64 < frac)
        for copy in range(copies):
            if copy == 0:
                yield record
                continue
            instruction = record.instruction
            if record.instruction_pool is not None and pools is not None:
                instruction = pools.draw(record.instruction_pool, seed, record.id, epoch=copy)
            yield InstructionRecord(instruction, record.input, record.output, record.source,
                                    f"{record.id}#{copy}", record.instruction_pool)


def count_tokens(record: InstructionRecord, tokenizer) -> int:
    """Tokens the record will take in training: BOS + prompt + response + EOS."""
    return len(tokenizer.encode(build_prompt(record.instruction, record.input) + record.output)) + 2


def _interleave(parts: dict[str, tuple[Path, int]], out, seed: int) -> None:
    """Merge the per-source files line by line, picking a source at random in proportion to what is left."""
    rng = random.Random(seed)
    files = {name: open(path, encoding="utf-8") for name, (path, _) in parts.items()}
    remaining = {name: n for name, (_, n) in parts.items() if n}
    try:
        while remaining:
            names = sorted(remaining)
            name = rng.choices(names, weights=[remaining[n] for n in names])[0]
            out.write(files[name].readline())
            remaining[name] -= 1
            if not remaining[name]:
                del remaining[name]
    finally:
        for f in files.values():
            f.close()


def build_instruction_data(config: BuildConfig, output: str | Path, tokenizer=None,
                           progress: bool = True) -> BuildSummary:
    """Write ``output`` (JSONL) and its ``.summary.json`` / ``.pools.json``; return the summary.

    Everything is written under temporary names and renamed at the end, so an interrupted build never
    leaves a file that looks complete.
    """
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    problems = Problems(strict=config.strict)
    pools = InstructionPools.load(config.instruction_pool) if config.instruction_pool else None
    stats: dict[str, Counter] = {name: Counter() for name in SOURCES}
    summaries: dict[str, SourceSummary] = {}
    parts: dict[str, tuple[Path, int]] = {}
    try:
        for name, stream in _source_streams(config, problems, pools, stats).items():
            summary = summaries[name] = SourceSummary()
            bad_before = problems.counts.get(name, 0)
            kept = apply_cap(_counting(stream(), summary, "read"), config.caps.get(name), config.seed)
            part = output.with_name(f"{output.name}.{name}.part")
            with open(part, "w", encoding="utf-8") as f:
                bar = tqdm(desc=f"{name:<13}", unit=" rec", disable=not progress)
                for record in apply_weight(_counting(kept, summary, "kept"), config.weights.get(name, 1.0),
                                           config.seed, pools):
                    f.write(json.dumps(record.to_json(), ensure_ascii=False) + "\n")
                    summary.written += 1
                    if tokenizer is not None:
                        summary.tokens += count_tokens(record, tokenizer)
                    bar.update()
                bar.close()
            summary.bad = problems.counts.get(name, 0) - bad_before
            summary.details = dict(stats[name])
            parts[name] = (part, summary.written)

        # Bad records of files that feed several sources (rationales) are counted under their own name.
        for name, count in problems.counts.items():
            summaries.setdefault(name, SourceSummary(bad=count))
        tmp = temp_path(output)
        with open(tmp, "w", encoding="utf-8") as out:
            _interleave(parts, out, config.seed)
        result = BuildSummary(str(output), summaries, problems.examples)
        if pools is not None:
            pools.save(pools_path(output))
        write_json_atomic(summary_path(output), {**result.to_json(), "bad_record_counts": problems.counts,
                                                 "bad_records_total": problems.total}, indent=1)
        replace(tmp, output)
    finally:
        for part, _ in parts.values():
            part.unlink(missing_ok=True)
    return result


def _counting(records: Iterable[InstructionRecord], summary: SourceSummary, attr: str) -> Iterator[InstructionRecord]:
    for record in records:
        setattr(summary, attr, getattr(summary, attr) + 1)
        yield record


def summary_path(output: str | Path) -> Path:
    return Path(str(output) + ".summary.json")


def pools_path(output: str | Path) -> Path:
    return Path(str(output) + ".pools.json")
