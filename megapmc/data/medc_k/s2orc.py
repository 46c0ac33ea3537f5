"""Select PubMed Central papers from S2ORC and turn each into one text document (PMC-LLaMA's paper corpus).

Accepted record shapes (one JSON object per line):

* the Semantic Scholar datasets release (``/datasets/v1/release/<date>/dataset/s2orc``, what users download
  today): ``corpusid``, ``externalids`` with lower-case keys (``"pubmedcentral": "9798118"``, or null),
  ``content.text`` (the whole paper as one string) and ``content.annotations``, where each kind
  (``title``, ``author``, ``abstract``, ``sectionheader``, ``paragraph``, ``bibentry``, ``bibref``,
  ``figureref`` ...) is a JSON-encoded string of a list of ``{"start", "end", "attributes"?}`` character
  spans into ``content.text``, or null;
* S2ORC 2020 metadata merged with its PDF parse: ``paper_id``, ``title``, ``pmc_id`` ("PMC3567245" or
  null), ``abstract`` (a string, or a list of ``{"text": ...}`` paragraphs), ``body_text`` (a list of
  ``{"text", "section"}`` paragraphs in reading order);
* the same with the parts nested: ``metadata`` {title, abstract, pmc_id} and ``pdf_parse`` {abstract, body_text};
* Semantic Scholar API style ids: ``externalIds`` {"PubMedCentral": "3567245"};
* the S2ORC 2020 release as shipped, metadata and PDF parses in separate files of the same shard, joined
  on ``paper_id`` (``megapmc.data.medc_k.pipeline.filter_s2orc_split``).

A paper is kept when it has a PMC id and some text. The output record is
``{"id", "pmc_id", "title", "text"}``, the text being the title, the abstract and the body paragraphs in
order, separated by blank lines, with a section's heading before its first paragraph.

For the current release the body is the ``paragraph`` spans (and, with headings, the ``sectionheader``
spans that precede one), with the characters of ``author``, ``bibentry`` and ``title`` spans cut out:
PMC-LLaMA's tokenizer script (Pretrain/Data/tokenize_dataset.py) singles out exactly the ``author`` and
``bibentry`` spans; text outside any paragraph (affiliations, venue, figure and table bodies, the
bibliography) is not body text.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, ClassVar

_PMC_ID = re.compile(r"^(?:PMC)?\s*(\d+)$", re.I)
# Span kinds of the current release whose characters never reach the body text.
DROPPED_SPANS = ("author", "bibentry", "title")
MAX_ISSUES = 1000


class S2orcRecordError(ValueError):
    """A record whose annotations cannot be read (bad JSON in a span list, a span outside the text)."""


@dataclass
class S2orcFilterStats:
    papers: int = 0
    kept: int = 0
    no_pmc_id: int = 0
    invalid_pmc_id: int = 0
    no_text: int = 0
    bad_annotations: int = 0  # PMC papers of the current release whose span lists are unreadable
    no_parse: int = 0  # PMC papers of a split release whose PDF parse never came
    malformed: int = 0  # lines that are not JSON objects
    issues: list[tuple[int, str]] = field(default_factory=list)

    COUNTS: ClassVar[tuple[str, ...]] = ("papers", "kept", "no_pmc_id", "invalid_pmc_id", "no_text", "bad_annotations", "no_parse",
              "malformed")

    def add_issue(self, line_no: int, reason: str) -> None:
        if len(self.issues) < MAX_ISSUES:
            self.issues.append((line_no, reason))

    def merge(self, other: "S2orcFilterStats") -> None:
        for name in self.COUNTS:
            setattr(self, name, getattr(self, name) + getattr(other, name))

    def counts(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in self.COUNTS}

    def as_dict(self) -> dict:
        return {**self.counts(), "issues": [list(i) for i in self.issues]}

    @classmethod
    def from_dict(cls, d: dict) -> "S2orcFilterStats":
        return cls(**{k: d[k] for k in cls.COUNTS}, issues=[tuple(i) for i in d.get("issues", [])])

    def format(self, path: str) -> str:
        out = [f"s2orc {path}: {self.papers:,} papers read, {self.kept:,} kept; dropped: "
               f"{self.no_pmc_id:,} without a PMC id, {self.invalid_pmc_id:,} with an unreadable PMC id, "
               f"{self.no_text:,} without text, {self.bad_annotations:,} with unreadable annotations, "
               f"{self.no_parse:,} without a PDF parse, {self.malformed:,} malformed lines"]
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
            if isinstance(ids, dict):
                # The datasets release spells the key in lower case, the Graph API in camel case.
                value = next((ids[k] for k in ("pubmedcentral", "PubMedCentral") if ids.get(k) not in (None, "")),
                             None)
                if value is not None:
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


def _join(title: Any, abstract: list[str], body: list[str]) -> str:
    parts = [title.strip()] if isinstance(title, str) and title.strip() else []
    return "\n\n".join(parts + [t for t in abstract if t] + body)


def _legacy_paper(record: dict, section_headings: bool) -> tuple[str, str]:
    """``(title, text)`` of a 2020-layout record."""
    body, last_section = [], None
    for section, text in _paragraphs(_nested(record, "body_text")):
        if not text.strip():
            continue
        if section_headings and section and section != last_section:
            body.append(section.strip())
        last_section = section
        body.append(text.strip())
    title = _nested(record, "title")
    abstract = [t.strip() for _, t in _paragraphs(_nested(record, "abstract"))]
    return (title if isinstance(title, str) else ""), _join(title, abstract, body)


# ---- the current release: content.text + span annotations ----------------------------------------


def annotation_spans(annotations: dict, kind: str, text_length: int) -> list[tuple[int, int]]:
    """The ``(start, end)`` spans of one annotation kind, sorted; ``S2orcRecordError`` when unreadable."""
    value = annotations.get(kind)
    if value is None:
        return []
    if isinstance(value, str):  # the release encodes every span list as a JSON string
        try:
            value = json.loads(value)
        except json.JSONDecodeError as e:
            raise S2orcRecordError(f"content.annotations.{kind} is not a JSON list ({e})") from None
    if not isinstance(value, list):
        raise S2orcRecordError(f"content.annotations.{kind} is a {type(value).__name__}, not a list of spans")
    spans = []
    for span in value:
        start = span.get("start") if isinstance(span, dict) else None
        end = span.get("end") if isinstance(span, dict) else None
        if not (isinstance(start, int) and isinstance(end, int) and 0 <= start <= end <= text_length):
            raise S2orcRecordError(f"content.annotations.{kind}: span {span!r} is not a start <= end inside "
                                   f"the {text_length:,}-character content.text")
        spans.append((start, end))
    return sorted(spans)


def _cut(text: str, start: int, end: int, dropped: list[tuple[int, int]]) -> str:
    """``text[start:end]`` without the characters of the ``dropped`` spans, whitespace-trimmed."""
    pieces, pos = [], start
    for d_start, d_end in dropped:
        if d_end <= pos or d_start >= end:
            continue
        pieces.append(text[pos:max(pos, d_start)])
        pos = max(pos, d_end)
    pieces.append(text[pos:end] if pos < end else "")
    return re.sub(r"[ \t]{2,}", " ", "".join(pieces)).strip()


def _current_paper(record: dict, section_headings: bool) -> tuple[str, str]:
    """``(title, text)`` of a datasets-release record; ``S2orcRecordError`` when its spans are unreadable."""
    content = record.get("content")
    text = content.get("text")
    if not isinstance(text, str) or not text.strip():
        return "", ""
    annotations = content.get("annotations") or {}
    if not isinstance(annotations, dict):
        raise S2orcRecordError(f"content.annotations is a {type(annotations).__name__}, not an object")
    n = len(text)
    dropped = sorted(s for kind in DROPPED_SPANS for s in annotation_spans(annotations, kind, n))
    titles = annotation_spans(annotations, "title", n)
    abstracts = annotation_spans(annotations, "abstract", n)
    # Headers sort before a paragraph starting at the same offset; both in reading (offset) order.
    blocks = sorted([(s, 0, e) for s, e in annotation_spans(annotations, "sectionheader", n)] +
                    [(s, 1, e) for s, e in annotation_spans(annotations, "paragraph", n)])
    body, header = [], None
    for start, is_paragraph, end in blocks:
        if not is_paragraph:
            header = _cut(text, start, end, dropped) or None
            continue
        if any(a_start <= start and end <= a_end for a_start, a_end in abstracts):
            continue  # an abstract paragraph: the abstract span already holds it
        paragraph = _cut(text, start, end, dropped)
        if not paragraph:
            continue
        if section_headings and header:
            body.append(header)
        header = None  # a heading goes before its section's first paragraph only
        body.append(paragraph)
    title = text[titles[0][0]:titles[0][1]].strip() if titles else ""
    return title, _join(title, [_cut(text, s, e, dropped) for s, e in abstracts], body)


def is_current_release(record: dict) -> bool:
    """A Semantic Scholar datasets record (``content.text`` + annotations), not a 2020 S2ORC one."""
    return isinstance(record.get("content"), dict)


def paper_title_and_text(record: dict, section_headings: bool = True) -> tuple[str, str]:
    """The title, and the text: title, abstract and body paragraphs in order, separated by blank lines."""
    if is_current_release(record):
        return _current_paper(record, section_headings)
    return _legacy_paper(record, section_headings)


def paper_text(record: dict, section_headings: bool = True) -> str:
    return paper_title_and_text(record, section_headings)[1]


def checked_pmc_id(record: dict, stats: S2orcFilterStats, line_no: int) -> str | None:
    """``pmc_id(record)``, counting papers without one (or with an unreadable one) in ``stats``."""
    stats.papers += 1
    try:
        pmc = pmc_id(record)
    except ValueError as e:
        stats.invalid_pmc_id += 1
        stats.add_issue(line_no, str(e))
        return None
    if pmc is None:
        stats.no_pmc_id += 1
    return pmc


def paper_id(record: dict) -> str | None:
    value = record.get("paper_id", record.get("corpusid", record.get("id")))
    return None if value is None else str(value)


def make_document(record: dict, pmc: str, stats: S2orcFilterStats, section_headings: bool = True,
                  line_no: int = 0) -> dict | None:
    """The output record of a PMC paper, or ``None`` (counted) when it has no text or bad annotations."""
    try:
        title, text = paper_title_and_text(record, section_headings)
    except S2orcRecordError as e:
        stats.bad_annotations += 1
        stats.add_issue(line_no, str(e))
        return None
    if not text:
        stats.no_text += 1
        return None
    stats.kept += 1
    return {"id": paper_id(record) or pmc, "pmc_id": pmc, "title": title, "text": text}


def convert_paper(record: dict, stats: S2orcFilterStats, line_no: int,
                  section_headings: bool = True) -> dict | None:
    """The output record for a PMC paper with text, else ``None`` (and ``stats`` says why)."""
    pmc = checked_pmc_id(record, stats, line_no)
    return None if pmc is None else make_document(record, pmc, stats, section_headings, line_no)
