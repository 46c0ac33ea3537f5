"""Knowledge-graph prompts from the UMLS Metathesaurus (``MRCONSO.RRF``, ``MRDEF.RRF``, ``MRREL.RRF``).

The files are pipe-separated, one row per line with a trailing ``|``, and gigabytes large: they are
streamed once each, keeping only one name and one definition per concept and a bounded sample per
relation type.

- **Names** (MRCONSO: CUI, LAT, TS, LUI, STT, SUI, ISPREF, AUI, SAUI, SCUI, SDUI, SAB, TTY, CODE, STR,
  SRL, SUPPRESS, CVF): English (``LAT=ENG``) and non-suppressed (``SUPPRESS=N``) atoms only. A concept's
  name is its preferred one: ``TS=P``, then ``STT=PF``, then ``ISPREF=Y``, then the source's rank in
  ``source_priority``, then the smallest AUI, so the choice never depends on file order.
- **Definitions** (MRDEF: CUI, AUI, ATUI, SATUI, SAB, DEF, SUPPRESS, CVF): non-suppressed ones of named
  concepts; chosen by ``source_priority``, then the smallest ATUI. Markup is stripped.
- **Relations** (MRREL: CUI1, AUI1, STYPE1, REL, CUI2, AUI2, STYPE2, RELA, RUI, SRUI, SAB, SL, RG, DIR,
  SUPPRESS, CVF). A row is read right to left, as the UMLS documents: ``CUI2 <RELA> CUI1`` (``isa`` on
  CUI1 = beta blocker, CUI2 = metoprolol says "metoprolol is a beta blocker"). The type is RELA, or REL
  where RELA is empty (only the hierarchical PAR/CHD/RB/RN are kept then). Each type is capped at
  ``max_per_relation`` pairs (``relation_caps`` overrides per type), sampled by a seeded hash of the pair.

Records: "describe this entity" (name → definition) and "what is the relation between X and Y"
(the two names → a sentence with the relation), instructions drawn per record from small pools.
"""
from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from tqdm import tqdm

from megapmc.sft.sources.common import BottomK, InstructionRecord, Problems, seeded_choice

DEFINITION_INSTRUCTIONS = [
    "Describe the following medical entity.",
    "What is the definition of the following medical concept?",
    "Explain what the following medical term means.",
    "Give a brief description of the following biomedical entity.",
]
RELATION_INSTRUCTIONS = [
    "What is the relation between the following two medical entities?",
    "Describe how the following two medical concepts are related.",
    "How is the first medical entity related to the second one?",
]
# Readings of REL codes used when RELA is empty, for "CUI2 <phrase> CUI1".
REL_PHRASES = {"PAR": "is a parent of", "CHD": "is a child of", "RB": "is broader than", "RN": "is narrower than"}
RELA_PHRASES = {"isa": "is a", "inverse_isa": "has the subtype"}
_VERB_WORDS = {"is", "has", "may", "was", "causes", "occurs", "contains", "uses", "induces"}
_LINKING_WORDS = {"of", "by", "with", "to", "in", "from", "for"}
DEFAULT_SOURCE_PRIORITY = ("MSH", "NCI", "SNOMEDCT_US", "MEDLINEPLUS", "CSP", "HPO", "GO", "MTH")

_MRCONSO_FIELDS = 18
_MRDEF_FIELDS = 8
_MRREL_FIELDS = 16
_TAG_RE = re.compile(r"<[^>]+>")
_SPACE_RE = re.compile(r"\s+")


@dataclass
class UmlsConfig:
    """What to take from UMLS and how much."""

    max_definitions: int | None = 50_000  # None: every named concept with a definition
    max_per_relation: int = 2_000
    relation_caps: dict[str, int] = field(default_factory=dict)
    relation_types: tuple[str, ...] | None = None  # None: every RELA type and PAR/CHD/RB/RN
    source_priority: tuple[str, ...] = DEFAULT_SOURCE_PRIORITY
    sources: tuple[str, ...] | None = None  # restrict names/definitions/relations to these SABs
    max_srl: int | None = None  # license restriction level: 0 keeps only unrestricted sources' names
    seed: int = 1234
    progress: bool = False  # a row counter per RRF file (the real ones take minutes)

    def __post_init__(self):
        if self.max_definitions is not None and self.max_definitions < 0:
            raise ValueError(f"max_definitions must be >= 0, got {self.max_definitions}")
        if self.max_per_relation < 0:
            raise ValueError(f"max_per_relation must be >= 0, got {self.max_per_relation}")
        for rel, cap in self.relation_caps.items():
            if cap < 0:
                raise ValueError(f"relation cap for {rel!r} must be >= 0, got {cap}")

    def cap_for(self, relation: str) -> int:
        return self.relation_caps.get(relation, self.max_per_relation)

    def source_rank(self, sab: str) -> int:
        return self.source_priority.index(sab) if sab in self.source_priority else len(self.source_priority)


def _rows(path: Path, n_fields: int, source: str, problems: Problems,
          progress: bool = False) -> Iterator[tuple[int, list[str]]]:
    with open(path, encoding="utf-8", errors="replace") as f:
        for line_no, line in enumerate(tqdm(f, desc=path.name, unit=" rows", disable=not progress), start=1):
            line = line.rstrip("\r\n")
            if not line:
                continue
            cols = line.split("|")
            if cols[-1] == "":  # the trailing "|"
                cols.pop()
            if len(cols) != n_fields:
                problems.report(source, path, line_no, f"{len(cols)} fields, expected {n_fields} for {path.name}")
                continue
            yield line_no, cols


def read_names(mrconso: str | Path, config: UmlsConfig, problems: Problems,
               source: str = "umls") -> dict[str, str]:
    """``{CUI: preferred English name}`` over non-suppressed atoms (see the module docstring)."""
    best: dict[str, tuple[tuple, str]] = {}
    for _, c in _rows(Path(mrconso), _MRCONSO_FIELDS, source, problems, config.progress):
        cui, lat, ts, stt, ispref, aui, sab, name, srl, suppress = (
            c[0], c[1], c[2], c[4], c[6], c[7], c[11], c[14], c[15], c[16])
        if lat != "ENG" or suppress != "N" or not name.strip():
            continue
        if config.sources is not None and sab not in config.sources:
            continue
        if config.max_srl is not None and srl.isdigit() and int(srl) > config.max_srl:
            continue
        rank = (ts != "P", stt != "PF", ispref != "Y", config.source_rank(sab), aui)
        if cui not in best or rank < best[cui][0]:
            best[cui] = (rank, name.strip())
    return {cui: name for cui, (_, name) in best.items()}


def clean_definition(text: str) -> str:
    return _SPACE_RE.sub(" ", _TAG_RE.sub(" ", text)).strip()


def read_definitions(mrdef: str | Path, names: dict[str, str], config: UmlsConfig, problems: Problems,
                     source: str = "umls") -> dict[str, str]:
    """``{CUI: definition}`` for named concepts, one chosen per concept by source priority then ATUI."""
    best: dict[str, tuple[tuple, str]] = {}
    for _, c in _rows(Path(mrdef), _MRDEF_FIELDS, source, problems, config.progress):
        cui, atui, sab, text, suppress = c[0], c[2], c[4], c[5], c[6]
        if cui not in names or suppress != "N":
            continue
        if config.sources is not None and sab not in config.sources:
            continue
        text = clean_definition(text)
        if not text:
            continue
        rank = (config.source_rank(sab), atui)
        if cui not in best or rank < best[cui][0]:
            best[cui] = (rank, text)
    return {cui: text for cui, (_, text) in best.items()}


def relation_phrase(rel: str, rela: str) -> str | None:
    """How "CUI2 ... CUI1" reads for this row, or ``None`` for a relation kept out of the prompts."""
    if not rela:
        return REL_PHRASES.get(rel)
    if rela in RELA_PHRASES:
        return RELA_PHRASES[rela]
    words = rela.split("_")
    # "finding_site_of" reads "is finding site of"; "has_ingredient", "may_treat" read as they are.
    if words[0] not in _VERB_WORDS and words[-1] in _LINKING_WORDS:
        words.insert(0, "is")
    return " ".join(words)


def sample_relations(mrrel: str | Path, names: dict[str, str], config: UmlsConfig, problems: Problems,
                     stats: Counter | None = None, source: str = "umls") -> dict[str, list[tuple[str, str]]]:
    """``{relation type: [(CUI2, CUI1), ...]}``: per type a seeded sample of distinct, named pairs."""
    stats = Counter() if stats is None else stats
    samples: dict[str, BottomK] = {}
    for _, c in _rows(Path(mrrel), _MRREL_FIELDS, source, problems, config.progress):
        cui1, rel, cui2, rela, sab, suppress = c[0], c[3], c[4], c[7], c[10], c[14]
        if suppress != "N" or not cui1 or not cui2 or cui1 == cui2:
            continue
        if cui1 not in names or cui2 not in names:
            continue
        if config.sources is not None and sab not in config.sources:
            continue
        relation = rela or rel
        if config.relation_types is not None and relation not in config.relation_types:
            continue
        if relation_phrase(rel, rela) is None:
            continue
        if relation not in samples:
            samples[relation] = BottomK(config.cap_for(relation), config.seed)
        samples[relation].offer((relation, cui2, cui1), (cui2, cui1))
    for relation, sample in samples.items():
        stats[f"relation:{relation}"] = len(sample)
    return {relation: sample.values() for relation, sample in sorted(samples.items())}


def load_umls(umls_dir: str | Path, config: UmlsConfig, problems: Problems, stats: Counter | None = None,
              source: str = "umls") -> Iterator[InstructionRecord]:
    """Definition and relation records from ``umls_dir``/MRCONSO.RRF, MRDEF.RRF, MRREL.RRF.

    A missing MRDEF or MRREL only drops that kind of record (MRCONSO is required).
    """
    stats = Counter() if stats is None else stats
    umls_dir = Path(umls_dir)
    mrconso = umls_dir / "MRCONSO.RRF"
    if not mrconso.is_file():
        raise FileNotFoundError(f"{mrconso}: missing; --umls-dir must hold the Metathesaurus RRF files")
    names = read_names(mrconso, config, problems, source)
    stats["concepts_named"] = len(names)

    mrdef = umls_dir / "MRDEF.RRF"
    if mrdef.is_file():
        definitions = read_definitions(mrdef, names, config, problems, source)
        chosen = BottomK(len(definitions) if config.max_definitions is None else config.max_definitions,
                         config.seed)
        for cui in sorted(definitions):
            chosen.offer(cui, cui)
        for cui in chosen.values():
            stats["definitions"] += 1
            yield InstructionRecord(
                seeded_choice(DEFINITION_INSTRUCTIONS, config.seed, ("def", cui)),
                names[cui], definitions[cui], source, f"umls-def-{cui}")

    mrrel = umls_dir / "MRREL.RRF"
    if mrrel.is_file():
        relations = sample_relations(mrrel, names, config, problems, stats, source)
        for relation, pairs in relations.items():
            for cui2, cui1 in pairs:
                rel = relation if relation in REL_PHRASES else ""
                phrase = relation_phrase(rel, "" if rel else relation)
                stats["relations"] += 1
                yield InstructionRecord(
                    seeded_choice(RELATION_INSTRUCTIONS, config.seed, ("rel", cui2, cui1)),
                    f"Entity 1: {names[cui2]}\nEntity 2: {names[cui1]}",
                    f"{names[cui2]} {phrase} {names[cui1]}.",
                    source, f"umls-rel-{relation}-{cui2}-{cui1}")
