"""Cleaning of text extracted from medical-book PDFs, following the PMC-LLaMA paper's MedC-K recipe.

Removed, each by its own rule so the report can say what went where:

* ``page_headers``: running headers/footers (a line at the top or bottom of at least
  ``min_header_repeats`` pages, digits ignored) and bare page numbers. Pages are split at form feeds
  (``\\f``, what pdftotext emits); text without form feeds only loses bare page-number lines.
* ``table_of_contents``: a "Contents" heading and the entries after it, and any run of 3+ lines that
  end in a page number (``Sepsis ........ 45``).
* ``references``: a "References"/"Bibliography"/"Further reading" heading and the reference entries
  that follow it (up to the first line that does not look like one, e.g. the next chapter's title).
* ``author_lines``: "By ...", "Authors: ...", "Edited by ..." lines and name lists with degrees (MD, PhD).
* ``captions``: figure and table captions (a paragraph opening with ``Fig. 5.1``/``Table 3``).
* ``urls``, ``citations`` (``[12]``, ``[3, 4]``, ``[5-7]``, ``(Smith et al., 2001)``) and
  ``figure_table_refs`` (``(Fig. 5.1)``, ``(see Table 3)``, ``Figure 2``) inside the text.
* ``duplicate_paragraphs`` (exact, after whitespace normalisation, within a book) and
  ``duplicate_documents`` (exact, across the whole run).
"""
from __future__ import annotations

import hashlib
import re
from collections import Counter
from dataclasses import dataclass, field

RULES = ("page_headers", "table_of_contents", "references", "author_lines", "captions", "urls", "citations",
         "figure_table_refs", "duplicate_paragraphs", "duplicate_documents")

_DIGITS = re.compile(r"\d+")
_PAGE_NUMBER = re.compile(r"^\s*(?:[-–—]\s*)?(?:[Pp]age\s+)?\d{1,4}(?:\s*[-–—])?\s*$")
_ROMAN_PAGE = re.compile(r"^\s*(?:[ivxlc]{1,6}|[IVXLC]{1,6})\s*$")  # front matter; only at page edges
_TOC_HEADING = re.compile(r"^\s*(?:table\s+of\s+)?contents\s*:?\s*$", re.I)
# A TOC entry ends in a page number, after dot leaders ("Preface ..... vii") or after a title of at least
# two words ("1.1 Definitions 3"; a lone "Chapter 1" is a heading, not an entry).
_TOC_LEADERS = re.compile(r"^\s*\S.{0,150}?\s*\.{2,}\s*(?:\d{1,4}|[ivxlc]{1,6})\s*$")
_TOC_SPACED = re.compile(r"^\s*\S+(?:[ \t]+\S+){1,20}[ \t]+\d{1,4}\s*$")
_REF_HEADING = re.compile(
    r"^\s*(?:\d+(?:\.\d+)*\s+)?(?:references|bibliography|further\s+reading|suggested\s+reading|"
    r"literature\s+cited|works\s+cited|selected\s+references)\s*:?\s*$", re.I)
_YEAR = re.compile(r"\b(?:1[89]|20)\d{2}[a-z]?\b")
_REF_MARKS = re.compile(r"et al|[;:]|\bdoi\b|\bvol\b|\bpp?\.|\bJ\b|\bed[s]?\.|\bpress\b", re.I)
_REF_NUMBERED = re.compile(r"^\s*(?:\[\d+\]|\d+\.)\s+\S")
_AUTHOR_PREFIX = re.compile(r"^\s*(?:By|Authors?|AUTHORS?|Written by|Edited by|Editors?|Eds?\.|Contributors?)\b\s*:?\s+")
_DEGREE = re.compile(r"\b(?:M\.?D\.?|Ph\.?D\.?|MBBS|MBChB|FRCP\w*|FRCS\w*|MRCP|FACP|FACS|MPH|M\.?Sc\.?|"
                     r"B\.?Sc\.?|DrPH|RN|PharmD|DDS)(?=$|[\s,;)])")
_CAPTION = re.compile(r"^\s*(?:Fig(?:ure)?s?\.?|Table|Tab\.)\s*\d+(?:\.\d+)*[a-z]?\s*[.:|]?\s+\S")
_URL_PAREN = re.compile(r"\s*\([^()]*?(?:https?://|ftp://|www\.)[^()]*\)", re.I)  # "(available at URL)"
_URL = re.compile(r"<?(?:https?://|ftp://|www\.)[^\s<>]+>?", re.I)
_URL_TRAILING = re.compile(r"[.,;:!?)\]]+$")
_CITATION = re.compile(
    r"\s*\[\s*\d+(?:\s*[-–,]\s*\d+)*\s*\]"
    r"|\s*\((?:[A-Z][\w'’-]+(?:\s+et\s+al\.?|\s+(?:and|&)\s+[A-Z][\w'’-]+)?,?\s+(?:19|20)\d{2}[a-z]?;?\s*)+\)")
_FIG_NUM = r"\d+(?:\.\d+)*[a-z]?"
_FIG_WORD = r"(?:Figs?\.|Figures?|Tables?|Tab\.)"
_FIG_PAREN = re.compile(
    rf"\s*\((?:see\s+|cf\.\s+)?{_FIG_WORD}\s*{_FIG_NUM}(?:\s*(?:,|and|&|[-–])\s*{_FIG_NUM})*\)", re.I)
_FIG_INLINE = re.compile(rf"\b{_FIG_WORD}\s*{_FIG_NUM}(?:\s*(?:,|and|&|[-–])\s*{_FIG_NUM})*", re.I)
_SPACE_BEFORE_PUNCT = re.compile(r"[ \t]+([.,;:!?)\]])")
_EMPTY_BRACKETS = re.compile(r"\s*(?:\(\s*\)|\[\s*\])")
_MULTI_SPACE = re.compile(r"[ \t]{2,}")
_BLANK_LINES = re.compile(r"\n\s*\n+")


@dataclass
class RuleCount:
    items: int = 0   # lines, paragraphs, matches or documents removed
    chars: int = 0   # characters removed

    def add(self, items: int, chars: int) -> None:
        self.items += items
        self.chars += chars


@dataclass
class BookCleanConfig:
    min_header_repeats: int = 3   # pages a header/footer must repeat on
    max_header_chars: int = 100   # longer lines are never headers
    page_edge_lines: int = 2      # lines at the top and at the bottom of a page checked for headers
    disabled_rules: tuple[str, ...] = ()

    def __post_init__(self):
        unknown = set(self.disabled_rules) - set(RULES)
        if unknown:
            raise ValueError(f"unknown cleaning rule(s) {sorted(unknown)}; rules are {', '.join(RULES)}")
        if self.min_header_repeats < 2:
            raise ValueError(f"min_header_repeats must be >= 2, got {self.min_header_repeats}")


@dataclass
class BookCleanStats:
    documents_in: int = 0
    documents_out: int = 0
    empty_after_cleaning: int = 0
    chars_in: int = 0
    chars_out: int = 0
    removed: dict[str, RuleCount] = field(default_factory=lambda: {r: RuleCount() for r in RULES})

    def format(self) -> str:
        lines = [f"books: {self.documents_in:,} in, {self.documents_out:,} out "
                 f"({self.empty_after_cleaning:,} empty after cleaning); characters {self.chars_in:,} -> "
                 f"{self.chars_out:,}",
                 f"  {'rule':<22}{'removed':>10}{'chars':>12}"]
        lines += [f"  {r:<22}{c.items:>10,}{c.chars:>12,}" for r, c in self.removed.items()]
        return "\n".join(lines)

    def merge(self, other: "BookCleanStats") -> None:
        self.documents_in += other.documents_in
        self.documents_out += other.documents_out
        self.empty_after_cleaning += other.empty_after_cleaning
        self.chars_in += other.chars_in
        self.chars_out += other.chars_out
        for rule, count in other.removed.items():
            self.removed[rule].add(count.items, count.chars)

    def as_dict(self) -> dict:
        return {"documents_in": self.documents_in, "documents_out": self.documents_out,
                "empty_after_cleaning": self.empty_after_cleaning, "chars_in": self.chars_in,
                "chars_out": self.chars_out,
                "removed": {r: {"items": c.items, "chars": c.chars} for r, c in self.removed.items()}}


class DocumentDeduplicator:
    """Exact duplicate detection across a whole run, keeping a 16-byte digest per document."""

    def __init__(self):
        self._seen: set[bytes] = set()

    def is_duplicate(self, text: str) -> bool:
        digest = hashlib.blake2b(text.encode("utf-8"), digest_size=16).digest()
        if digest in self._seen:
            return True
        self._seen.add(digest)
        return False


class BookCleaner:
    """Cleans one book text at a time; ``clean`` also drops books already seen in this run.

    ``clean_text`` is the per-book part (no state across books), which worker processes run; the
    parent then applies the cross-book deduplication (``accept``).
    """

    def __init__(self, cfg: BookCleanConfig | None = None):
        self.cfg = cfg or BookCleanConfig()
        self.stats = BookCleanStats()
        self._dedup = DocumentDeduplicator()

    def _on(self, rule: str) -> bool:
        return rule not in self.cfg.disabled_rules

    def clean(self, text: str) -> str | None:
        """The cleaned text, or ``None`` when nothing is left or the book was already seen."""
        cleaned = self.clean_text(text)
        return None if cleaned is None else self.accept(cleaned)

    def accept(self, cleaned: str) -> str | None:
        """Count a cleaned book as written, unless it duplicates an earlier one (then ``None``)."""
        if self._on("duplicate_documents") and self._dedup.is_duplicate(cleaned):
            self.stats.removed["duplicate_documents"].add(1, len(cleaned))
            return None
        self.stats.documents_out += 1
        self.stats.chars_out += len(cleaned)
        return cleaned

    def clean_text(self, text: str) -> str | None:
        """Every per-book rule; ``None`` when nothing is left."""
        self.stats.documents_in += 1
        self.stats.chars_in += len(text)
        lines = self._remove_page_headers(text) if self._on("page_headers") else text.replace("\f", "\n").split("\n")
        for rule, fn in (("table_of_contents", self._remove_toc), ("references", self._remove_references),
                         ("author_lines", self._remove_author_lines)):
            if self._on(rule):
                lines = fn(lines)
        paragraphs = [p for p in _BLANK_LINES.split("\n".join(lines)) if p.strip()]
        if self._on("captions"):
            captions = [bool(_CAPTION.match(p)) and len(p) < 400 for p in paragraphs]
            self._count("captions", [p for p, c in zip(paragraphs, captions) if c])
            paragraphs = [p for p, c in zip(paragraphs, captions) if not c]
        paragraphs = [self._clean_inline(p) for p in paragraphs]
        paragraphs = [p for p in paragraphs if p]
        if self._on("duplicate_paragraphs"):
            paragraphs = self._dedup_paragraphs(paragraphs)
        out = "\n\n".join(paragraphs)
        if not out:
            self.stats.empty_after_cleaning += 1
            return None
        return out

    def _count(self, rule: str, removed: list[str]) -> None:
        self.stats.removed[rule].add(len(removed), sum(len(x) for x in removed))

    # ---- line rules ------------------------------------------------------------------------

    def _remove_page_headers(self, text: str) -> list[str]:
        pages = [p.split("\n") for p in text.split("\f")]
        edge = self.cfg.page_edge_lines
        removed: list[str] = []

        def edges(page: list[str]) -> list[int]:
            nonblank = [i for i, line in enumerate(page) if line.strip()]
            return sorted(set(nonblank[:edge] + nonblank[-edge:]))

        def key(line: str) -> str:
            return _DIGITS.sub("#", " ".join(line.split()).lower())

        counts: Counter[str] = Counter()
        for page in pages:
            counts.update({key(page[i]) for i in edges(page) if len(page[i].strip()) <= self.cfg.max_header_chars})
        repeated = {k for k, n in counts.items() if n >= self.cfg.min_header_repeats} if len(pages) > 1 else set()
        out: list[str] = []
        for page in pages:
            drop = {i for i in edges(page) if key(page[i]) in repeated or _ROMAN_PAGE.match(page[i])}
            drop |= {i for i, line in enumerate(page) if _PAGE_NUMBER.match(line)}
            removed += [page[i] for i in sorted(drop)]
            kept = [line for i, line in enumerate(page) if i not in drop]
            while kept and not kept[0].strip():
                kept.pop(0)
            while kept and not kept[-1].strip():
                kept.pop()
            # A paragraph cut by the page break continues on the next page: join without a blank line
            # unless the page ended a sentence.
            if out and kept and not out[-1].rstrip().endswith((".", "!", "?", ":")):
                out += kept
            else:
                out += ([""] if out else []) + kept
        self._count("page_headers", removed)
        return out

    def _remove_toc(self, lines: list[str]) -> list[str]:
        drop: set[int] = set()
        i = 0
        while i < len(lines):
            if _TOC_HEADING.match(lines[i]):
                j = i + 1
                while j < len(lines) and (not lines[j].strip() or self._is_toc_entry(lines[j])):
                    j += 1
                drop.update(range(i, j))
                i = j
                continue
            # A run of 3+ entry-looking lines (blank lines allowed between) is a TOC without a heading.
            j, entries = i, 0
            while j < len(lines) and (self._is_toc_entry(lines[j]) or (entries and not lines[j].strip())):
                entries += bool(lines[j].strip())
                j += 1
            if entries >= 3:
                drop.update(range(i, j))
                i = j
            else:
                i += 1
        self._count("table_of_contents", [lines[i] for i in sorted(drop) if lines[i].strip()])
        return [line for i, line in enumerate(lines) if i not in drop]

    @staticmethod
    def _is_toc_entry(line: str) -> bool:
        s = line.strip()
        # "... 45" after a sentence's full stop is prose that happens to end in a number, not an entry.
        if len(s) > 160:
            return False
        return bool(_TOC_LEADERS.match(s) or _TOC_SPACED.match(s)) and not re.search(
            r"[.!?]\s*\d{1,4}$", re.sub(r"\.{2,}", " ", s))

    def _remove_references(self, lines: list[str]) -> list[str]:
        drop: set[int] = set()
        i = 0
        while i < len(lines):
            if not _REF_HEADING.match(lines[i]):
                i += 1
                continue
            j = i + 1
            while j < len(lines) and (not lines[j].strip() or self._is_reference(lines[j], lines, j)):
                j += 1
            drop.update(range(i, j))
            i = j
        self._count("references", [lines[i] for i in sorted(drop) if lines[i].strip()])
        return [line for i, line in enumerate(lines) if i not in drop]

    @staticmethod
    def _is_reference(line: str, lines: list[str], j: int) -> bool:
        if _REF_NUMBERED.match(line) and (_YEAR.search(line) or _REF_MARKS.search(line)):
            return True
        if _YEAR.search(line) and _REF_MARKS.search(line):
            return True
        # A wrapped entry: a continuation line right after a reference line, before a blank line.
        prev = lines[j - 1] if j > 0 else ""
        return bool(prev.strip()) and not _REF_HEADING.match(prev) and _YEAR.search(line) is not None

    def _remove_author_lines(self, lines: list[str]) -> list[str]:
        kept, removed = [], []
        for line in lines:
            (removed if self._is_author_line(line) else kept).append(line)
        self._count("author_lines", removed)
        return kept

    @staticmethod
    def _is_author_line(line: str) -> bool:
        """ "By Jane Smith, MD", "Edited by A. Brown", or a name list with degrees; not a sentence."""
        s = line.strip()
        if not s or len(s) > 200 or s.endswith(("?", "!")):
            return False
        prefix = _AUTHOR_PREFIX.match(s)
        words = re.findall(r"[A-Za-z][\w.'’-]*", s[prefix.end():] if prefix else s)
        if not words or len(words) > 30:
            return False
        name_like = sum(w[0].isupper() for w in words if w not in ("and", "de", "van", "von")) >= 0.7 * len(words)
        return name_like and (prefix is not None or _DEGREE.search(s) is not None)

    # ---- inline rules ----------------------------------------------------------------------

    def _clean_inline(self, paragraph: str) -> str:
        p = paragraph
        if self._on("urls"):
            p = self._sub(_URL_PAREN, p, "urls")
            p = self._sub(_URL, p, "urls", keep_trailing=True)
        if self._on("citations"):
            p = self._sub(_CITATION, p, "citations")
        if self._on("figure_table_refs"):
            p = self._sub(_FIG_PAREN, p, "figure_table_refs")
            p = self._sub(_FIG_INLINE, p, "figure_table_refs")
        p = _EMPTY_BRACKETS.sub("", p)
        p = _SPACE_BEFORE_PUNCT.sub(r"\1", p)
        p = _MULTI_SPACE.sub(" ", p)
        return "\n".join(line.strip() for line in p.split("\n") if line.strip())

    def _sub(self, pattern: re.Pattern, text: str, rule: str, keep_trailing: bool = False) -> str:
        count = self.stats.removed[rule]

        def repl(m: re.Match) -> str:
            s = m.group(0)
            # A URL at the end of a sentence keeps the sentence's punctuation.
            tail = _URL_TRAILING.search(s) if keep_trailing else None
            kept = tail.group(0) if tail else ""
            count.add(1, len(s) - len(kept))
            return kept

        return pattern.sub(repl, text)

    def _dedup_paragraphs(self, paragraphs: list[str]) -> list[str]:
        seen: set[str] = set()
        kept, removed = [], []
        for p in paragraphs:
            norm = " ".join(p.split())
            if norm in seen:
                removed.append(p)
            else:
                seen.add(norm)
                kept.append(p)
        self._count("duplicate_paragraphs", removed)
        return kept
