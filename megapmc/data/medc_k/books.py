"""Cleaning of text extracted from medical-book PDFs, following the PMC-LLaMA paper's MedC-K recipe.

Removed, each by its own rule so the report can say what went where:

* ``page_headers``: running headers/footers (a line at the top or bottom of at least
  ``min_header_repeats`` pages, digits ignored) and bare page numbers. Pages are split at form feeds
  (``\\f``, what pdftotext emits); text without form feeds only loses bare page-number lines.
* ``table_of_contents``: a "Contents" heading and the entries after it, and any run of 3+ lines that
  end in increasing page numbers (``Sepsis ........ 45``). A line whose text before the number ends in a
  number, a range or a unit (``Sodium ..... 135-145 mmol/L``, ``Heart rate 60 100``) is a value, not an
  entry; a removed block leaves a paragraph break, so the text around it is not merged.
* ``references``: a "References"/"Bibliography"/"Further reading" heading and the reference entries
  that follow it (up to the first line that does not look like one, e.g. the next chapter's title).
* ``author_lines``: "By ...", "Authors: ...", "Edited by ..." lines and name lists with degrees (MD, PhD).
* ``captions``: figure and table captions (a paragraph opening with ``Fig. 5.1``/``Table 3``).
* ``urls``: a parenthesised aside holding a URL is removed; a sentence that uses a bare URL ("Guidance is
  online at https://...") is removed whole, since without it the sentence is broken.
* ``citations`` (``[12]``, ``[3, 4]``, ``[5-7]``, ``(Smith et al., 2001)``).
* ``figure_table_refs``: asides (``(Fig. 5.1)``, ``(see Table 3)``), trailing pointers (``, see Figure 2``)
  and sentences that only point at one (``See Figure 2.1 for the algorithm.``). A reference that is part
  of a sentence ("Figure 2 shows the curve") stays: removing it would break the sentence.
  Every inline removal closes the gap it leaves: no space before punctuation, no doubled space, no
  empty brackets; nothing else in the text is respaced.
* ``duplicate_paragraphs`` (exact, after whitespace normalisation, within a book),
  ``duplicate_documents`` (exact, across the whole run) and ``near_duplicate_documents`` (MinHash LSH
  over word 5-grams, :mod:`megapmc.data.medc_k.near_dedup`; another edition or scan of a kept book).
"""
from __future__ import annotations

import hashlib
import re
from collections import Counter
from dataclasses import dataclass, field

from megapmc.data.medc_k.near_dedup import MAX_NEAR_DUPLICATE_THRESHOLD, NearDuplicateFilter

RULES = ("page_headers", "table_of_contents", "references", "author_lines", "captions", "urls", "citations",
         "figure_table_refs", "duplicate_paragraphs", "duplicate_documents", "near_duplicate_documents")

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
_URL_PAREN = re.compile(r"\([^()]*?(?:https?://|ftp://|www\.)[^()]*\)", re.I)  # "(available at URL)"
# A URL never ends in the sentence's own punctuation.
_URL = re.compile(r"<?(?:https?://|ftp://|www\.)(?:[^\s<>]*[^\s<>.,;:!?)\]])?>?", re.I)
_CITATION = re.compile(
    r"\[\s*\d+(?:\s*[-–,]\s*\d+)*\s*\]"
    r"|\((?:[A-Z][\w'’-]+(?:\s+et\s+al\.?|\s+(?:and|&)\s+[A-Z][\w'’-]+)?,?\s+(?:19|20)\d{2}[a-z]?;?\s*)+\)")
_FIG_NUM = r"\d+(?:\.\d+)*[a-z]?"
_FIG_WORD = r"(?:Figs?\.|Figures?|Tables?|Tab\.)"
_FIG_REF = rf"{_FIG_WORD}\s*{_FIG_NUM}(?:\s*(?:,|and|&|[-–])\s*{_FIG_NUM})*"
_FIG_PAREN = re.compile(rf"\((?:see\s+(?:also\s+)?|cf\.\s+)?{_FIG_REF}\)", re.I)
# ", see Figure 2" / "; cf. Table 3" closing a clause.
_FIG_POINTER = re.compile(rf"[,;]\s*(?:see\s+(?:also\s+)?|cf\.\s+){_FIG_REF}(?=\s*[.;:!?)]|\s*$)", re.I)
# A sentence that opens by pointing at a figure: "See Figure 2.1 for the algorithm."
_FIG_SENTENCE = re.compile(rf"(?:^|(?<=[.!?]\s)|(?<=\n))(?:See|Refer to|Cf\.)\s+(?:also\s+)?{_FIG_REF}")
# Sentence ends: a terminator, optional closing quote/bracket, then whitespace or the end.
_SENTENCE_END = re.compile(r"[.!?][\"'’”)\]]*(?=\s|$)")
_ABBREVIATION = re.compile(r"(?:\b(?:Dr|Mr|Mrs|Ms|Prof|St|No|vs|al|Figs?|Eq|approx|ca|[A-Z])|\be\.g|\bi\.e)\.$")
_GAP = "\x00"  # stands where an inline rule removed something, until _close_gaps tidies around it
_GAP_IN_BRACKETS = re.compile(r"[(\[][ \t]*\x00[\x00 \t]*[)\]]")
_GAP_BEFORE_PUNCT = re.compile(r"[ \t]*\x00[\x00 \t]*(?=[.,;:!?)\]]|\n|$)")
_GAP_AFTER_CLAUSE = re.compile(r"[,;:][ \t]*\x00[\x00 \t]*(?=[.,;:!?])")  # "bases, <gap>." -> "bases."
_GAP_AFTER_OPEN = re.compile(r"(?:^|(?<=\n)|(?<=[(\[]))[ \t]*\x00[\x00 \t]*")
_GAP_BETWEEN = re.compile(r"[ \t]*\x00[\x00 \t]*")
_BLANK_LINES = re.compile(r"\n\s*\n+")
# What ends the text before a value, never a TOC entry's title: a number, a range, a unit.
_VALUE_TAIL = re.compile(r"(?:\d|%|[-–/]|\b(?:mmol|mol|mg|g|kg|mL|ml|L|dL|IU|U|mmHg|bpm|min|h|years?))$")


def _toc_page(line: str) -> int | None:
    """The page number of a table-of-contents entry (roman front matter counts as 0), else ``None``.

    An entry ends in a page number, after dot leaders ("Preface ..... vii") or after a title of at least
    two words ("1.1 Definitions 3"; a lone "Chapter 1" is a heading). Prose ("... was 12.") and values
    ("Sodium ..... 135-145", "Heart rate 60 100": the text before the number ends in a number, a range
    or a unit) are not entries.
    """
    s = line.strip()
    if len(s) > 160 or not (_TOC_LEADERS.match(s) or _TOC_SPACED.match(s)):
        return None
    body = re.sub(r"\s*\.{2,}\s*", " ", s)
    head, _, page = body.rpartition(" ")
    head = head.rstrip()
    if not head or re.search(r"[.!?]$", head) or _VALUE_TAIL.search(head):
        return None
    return int(page) if page.isdigit() else 0


def _without(lines: list[str], drop: set[int]) -> list[str]:
    """``lines`` without the ``drop`` ones; each removed block leaves a blank line (a paragraph break),
    so the text before and after it is not joined into one paragraph."""
    out = []
    for i, line in enumerate(lines):
        if i not in drop:
            out.append(line)
        elif i - 1 not in drop:
            out.append("")
    return out


def _sentence_around(text: str, start: int, end: int) -> tuple[int, int]:
    """The span of the sentence holding ``text[start:end]`` (a terminator not after an abbreviation ends one)."""
    begin = 0
    for m in _SENTENCE_END.finditer(text, 0, start):
        if not _ABBREVIATION.search(text, max(0, m.start() - 8), m.start() + 1):
            begin = m.end()
    while begin < start and text[begin].isspace():  # the line break before a sentence stays
        begin += 1
    for m in _SENTENCE_END.finditer(text, end):
        if not _ABBREVIATION.search(text, max(0, m.start() - 8), m.start() + 1):
            return begin, m.end()
    return begin, len(text)


def _close_gaps(text: str) -> str:
    """Tidy where inline rules removed text: no empty brackets, no space before punctuation, one space."""
    text = _GAP_IN_BRACKETS.sub(_GAP, text)
    text = _GAP_AFTER_CLAUSE.sub("", text)
    text = _GAP_BEFORE_PUNCT.sub("", text)
    text = _GAP_AFTER_OPEN.sub("", text)
    return _GAP_BETWEEN.sub(" ", text)


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
    # Word 5-gram Jaccard similarity at which a book is a near copy of an earlier one (at most 0.95).
    # 0.8: another scan or a lightly revised edition scores above it, two books on one topic far below.
    near_duplicate_threshold: float = 0.8
    disabled_rules: tuple[str, ...] = ()

    def __post_init__(self):
        unknown = set(self.disabled_rules) - set(RULES)
        if unknown:
            raise ValueError(f"unknown cleaning rule(s) {sorted(unknown)}; rules are {', '.join(RULES)}")
        if self.min_header_repeats < 2:
            raise ValueError(f"min_header_repeats must be >= 2, got {self.min_header_repeats}")
        if not 0 < self.near_duplicate_threshold <= MAX_NEAR_DUPLICATE_THRESHOLD:
            raise ValueError(f"--near-duplicate-threshold must be in (0, {MAX_NEAR_DUPLICATE_THRESHOLD}], got "
                             f"{self.near_duplicate_threshold}")


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

    ``clean_text`` and ``signature`` are the per-book part (no state across books), which worker
    processes run; the parent then applies the cross-book deduplication (``accept``) in input order.
    """

    def __init__(self, cfg: BookCleanConfig | None = None):
        self.cfg = cfg or BookCleanConfig()
        self.stats = BookCleanStats()
        self._dedup = DocumentDeduplicator()
        self._near = (NearDuplicateFilter(self.cfg.near_duplicate_threshold)
                      if self._on("near_duplicate_documents") else None)

    def _on(self, rule: str) -> bool:
        return rule not in self.cfg.disabled_rules

    def clean(self, text: str) -> str | None:
        """The cleaned text, or ``None`` when nothing is left or the book was already seen."""
        cleaned = self.clean_text(text)
        return None if cleaned is None else self.accept(cleaned)

    def signature(self, cleaned: str):
        """The book's MinHash values for near-duplicate detection (``None`` when that rule is off)."""
        return self._near.signature(cleaned) if self._near is not None else None

    def accept(self, cleaned: str, signature=None) -> str | None:
        """Count a cleaned book as written, unless it (nearly) duplicates an earlier one (then ``None``).

        ``signature`` is ``self.signature(cleaned)``, when a worker process computed it already.
        """
        if self._on("duplicate_documents") and self._dedup.is_duplicate(cleaned):
            self.stats.removed["duplicate_documents"].add(1, len(cleaned))
            return None
        if self._near is not None:
            if self._near.is_duplicate(signature if signature is not None else self.signature(cleaned)):
                self.stats.removed["near_duplicate_documents"].add(1, len(cleaned))
                return None
        self.stats.documents_out += 1
        self.stats.chars_out += len(cleaned)
        return cleaned

    def clean_text(self, text: str) -> str | None:
        """Every per-book rule; ``None`` when nothing is left."""
        self.stats.documents_in += 1
        self.stats.chars_in += len(text)
        text = text.replace(_GAP, "")  # a NUL is extraction debris, and the inline rules' gap marker
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
                while j < len(lines) and (not lines[j].strip() or _toc_page(lines[j]) is not None):
                    j += 1
                drop.update(range(i, j))
                i = j
                continue
            # A run of 3+ entry-looking lines (blank lines allowed between) with page numbers that never
            # go down is a TOC without a heading; a list of values (lab results, doses) is not.
            j, pages = i, []
            while j < len(lines) and (_toc_page(lines[j]) is not None or (pages and not lines[j].strip())):
                if lines[j].strip():
                    pages.append(_toc_page(lines[j]))
                j += 1
            if len(pages) >= 3 and all(a <= b for a, b in zip(pages, pages[1:])):
                drop.update(range(i, j))
                i = j
            else:
                i += 1
        self._count("table_of_contents", [lines[i] for i in sorted(drop) if lines[i].strip()])
        return _without(lines, drop)

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
        return _without(lines, drop)

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
            p = self._remove(_URL_PAREN, p, "urls")
            p = self._remove(_URL, p, "urls", whole_sentence=True)
        if self._on("citations"):
            p = self._remove(_CITATION, p, "citations")
        if self._on("figure_table_refs"):
            p = self._remove(_FIG_PAREN, p, "figure_table_refs")
            p = self._remove(_FIG_POINTER, p, "figure_table_refs")
            p = self._remove(_FIG_SENTENCE, p, "figure_table_refs", whole_sentence=True)
        if _GAP in p:
            p = _close_gaps(p)
        return "\n".join(line.strip() for line in p.split("\n") if line.strip())

    def _remove(self, pattern: re.Pattern, text: str, rule: str, whole_sentence: bool = False) -> str:
        """Replace every match (or, with ``whole_sentence``, the sentence around it) by a gap marker."""
        count = self.stats.removed[rule]
        pieces, pos = [], 0
        for m in pattern.finditer(text):
            start, end = _sentence_around(text, m.start(), m.end()) if whole_sentence else m.span()
            if start < pos:  # inside a sentence already removed
                continue
            pieces += [text[pos:start], _GAP]
            count.add(1, len(text[start:end].replace(_GAP, "")))
            pos = end
        return "".join(pieces) + text[pos:] if pieces else text

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
