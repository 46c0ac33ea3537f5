"""Select PubMed Central papers from S2ORC and turn each into one text document (PMC-LLaMA's paper corpus).

Accepted record shapes (one JSON object per line):

* S2ORC 2020 metadata merged with its PDF parse: ``paper_id``, ``title``, ``pmc_id`` ("PMC3567245" or
  null), ``abstract`` (a string, or a list of ``{"text": ...}`` paragraphs), ``body_text`` (a list of
  ``{"text", "section"}`` paragraphs in reading order);
* the same with the parts nested: ``metadata`` {title, abstract, pmc_id} and ``pdf_parse`` {abstract, body_text};
* Semantic Scholar API style ids: ``externalids``/``externalIds`` {"PubMedCentral": "3567245"};
* the S2ORC 2020 release as shipped, metadata and PDF parses in separate files of the same shard, joined
  on ``paper_id`` (``megapmc.data.medc_k.pipeline.filter_s2orc_split``): only the PMC papers' metadata
  is held in memory while the parses stream past.

A paper is kept when it has a PMC id and some text. The output record is
``{"id", "pmc_id", "title", "text"}``, the text being the title, the abstract and the body paragraphs in
order, separated by blank lines, with a section's heading before its first paragraph.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

_PMC_ID = re.compile(r"^(?:PMC)?\s*(\d+)$", re.I)


@dataclass
class S2orcFilterStats:
    papers: int = 0
    kept: int = 0
    no_pmc_id: int = 0
    invalid_pmc_id: int = 0
    no_text: int = 0
    no_parse: int = 0  # PMC papers of a split release whose PDF parse never came
    malformed: int = 0
    issues: list[tuple[int, str]] = field(default_factory=list)

    def format(self, path: str) -> str:
        out = [f"s2orc {path}: {self.papers:,} papers read, {self.kept:,} kept; dropped: "
               f"{self.no_pmc_id:,} without a PMC id, {self.invalid_pmc_id:,} with an unreadable PMC id, "
               f"{self.no_text:,} without text, {self.no_parse:,} without a PDF parse, "
               f"{self.malformed:,} malformed lines"]
        out += [f"  {path}:{n}: {reason}" for n, reason in self.issues[:20]]
        return "\n".join(out)


def _nested(record: dict, *keys: str) -> Any:
    """First non-empty value among ``record[k]`` and ``record["metadata"][k]`` / ``record["pdf_parse"][k]``."""
    for container in (record, record.get("metadata"), record.get("pdf_parse")):
        if isinstance(container, dict):
            for k in keys:
                value = container.get(k)
                if value not in (None, "", []):
                    return value
    return None


def pmc_id(record: dict) -> str | None:
    """The paper's PubMed Central id as ``PMC<digits>``; ``None`` when absent; ``ValueError`` when unreadable."""
    value = _nested(record, "pmc_id", "pmcid")
    if value is None:
        for key in ("externalids", "externalIds", "external_ids"):
            ids = record.get(key)
            if isinstance(ids, dict) and ids.get("PubMedCentral"):
                value = ids["PubMedCentral"]
                break
    if value is None:
        return None
    m = _PMC_ID.match(str(value).strip())
    if not m:
        raise ValueError(f"unreadable PMC id {value!r}")
    return f"PMC{m.group(1)}"


def _paragraphs(value: Any) -> list[tuple[str | None, str]]:
    """(section, text) pairs from a string or a list of S2ORC paragraph objects."""
    if isinstance(value, str):
        return [(None, value)]
    out = []
    if isinstance(value, list):
        for para in value:
            if isinstance(para, dict) and isinstance(para.get("text"), str):
                section = para.get("section")
                out.append((section if isinstance(section, str) else None, para["text"]))
            elif isinstance(para, str):
                out.append((None, para))
    return out


def paper_text(record: dict, section_headings: bool = True) -> str:
    """Title, abstract and body paragraphs in order, separated by blank lines."""
    parts: list[str] = []
    title = _nested(record, "title")
    if isinstance(title, str) and title.strip():
        parts.append(title.strip())
    parts += [t.strip() for _, t in _paragraphs(_nested(record, "abstract")) if t.strip()]
    last_section = None
    for section, text in _paragraphs(_nested(record, "body_text")):
        if not text.strip():
            continue
        if section_headings and section and section != last_section:
            parts.append(section.strip())
        last_section = section
        parts.append(text.strip())
    return "\n\n".join(parts)


def checked_pmc_id(record: dict, stats: S2orcFilterStats, line_no: int) -> str | None:
    """``pmc_id(record)``, counting papers without one (or with an unreadable one) in ``stats``."""
    stats.papers += 1
    try:
        pmc = pmc_id(record)
    except ValueError as e:
        stats.invalid_pmc_id += 1
        stats.issues.append((line_no, str(e)))
        return None
    if pmc is None:
        stats.no_pmc_id += 1
    return pmc


def paper_id(record: dict) -> str | None:
    value = record.get("paper_id", record.get("corpusid", record.get("id")))
    return None if value is None else str(value)


def make_document(record: dict, pmc: str, stats: S2orcFilterStats, section_headings: bool = True) -> dict | None:
    """The output record of a PMC paper, or ``None`` (counted) when it has no text."""
    text = paper_text(record, section_headings)
    if not text:
        stats.no_text += 1
        return None
    stats.kept += 1
    title = _nested(record, "title")
    return {"id": paper_id(record) or pmc, "pmc_id": pmc, "title": title if isinstance(title, str) else "",
            "text": text}


def convert_paper(record: dict, stats: S2orcFilterStats, line_no: int,
                  section_headings: bool = True) -> dict | None:
    """The output record for a PMC paper with text, else ``None`` (and ``stats`` says why)."""
    pmc = checked_pmc_id(record, stats, line_no)
    return None if pmc is None else make_document(record, pmc, stats, section_headings)
