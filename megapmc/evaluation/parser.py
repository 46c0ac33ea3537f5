"""Turn a generated answer into an option index, saying which rule matched.

Rules, in order (the first that decides wins):

1. ``option_is_correct``: PMC-LLaMA's own format, ``OPTION B IS CORRECT`` (any case).
2. ``letter``: an explicit answer letter: ``Answer: B``, ``the answer is (B)``, ``B.``/``(B)``/``B)``
   at the start, or a lone ``B``. A bare capital at the start followed by a word (``A 23-year-old``)
   is English, not an answer.
3. ``option_text``: exactly one option's text occurs (normalised; an option contained in a longer
   matching option yields to it, ``vitamin B`` to ``vitamin B12``).
4. ``yes_no_maybe``: for yes/no/maybe options, the answer's opening clause starts with one of them
   and names no other, or ``answer is X``, or exactly one of them occurs as a word.

Anything else is unparseable: ``index`` is ``None`` and the caller counts it as wrong and reports it.
"""
from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Optional, Sequence

UNPARSED = "unparsed"
_YES_NO_MAYBE = ("yes", "no", "maybe")


@dataclass(frozen=True)
class ParsedAnswer:
    index: Optional[int]
    rule: str  # option_is_correct | letter | option_text | yes_no_maybe | unparsed


def _normalise(text: str) -> str:
    text = unicodedata.normalize("NFKC", text).lower()
    return " ".join(re.sub(r"[^\w%]+", " ", text).split())


def _letter_patterns(letters: Sequence[str]) -> list[re.Pattern]:
    # Letters are matched as capitals only: a lower-case "a" is the article.
    cls = "[" + "".join(re.escape(x.upper()) for x in letters) + "]"
    return [
        # "answer is B", "Answer: (B)", "correct option is B.", "the correct answer would be option B"
        re.compile(
            rf"(?i:answer|option|choice)\s*(?i:is|would be|:|-)?\s*(?i:option\s*)?[\(\[]?({cls})[\)\]]?(?!\w)"
        ),
        re.compile(rf"^\s*[\(\[]?({cls})\s*(?:[\)\]\.:,]|$)"),  # "B", "B.", "(B)", "B)" at the start
        re.compile(rf"^\s*({cls})\s*$", re.MULTILINE),  # a line holding only the letter
    ]


def parse_answer(text: str, letters: Sequence[str], texts: Sequence[str]) -> ParsedAnswer:
    """Parse ``text`` against options labelled ``letters`` with ``texts``."""
    upper = [x.upper() for x in letters]
    m = re.search(r"option\s*[\(\[]?\s*([a-z])\s*[\)\]]?\s*is\s*(?:the\s*)?correct", text, re.IGNORECASE)
    if m and m.group(1).upper() in upper:
        return ParsedAnswer(upper.index(m.group(1).upper()), "option_is_correct")

    body = text.split("###Rationale:")[0]  # a rationale discusses every option; the answer part decides
    for pattern in _letter_patterns(letters):
        m = pattern.search(body)
        if m:
            return ParsedAnswer(upper.index(m.group(1).upper()), "letter")

    norm_body = f" {_normalise(body)} "
    norm_texts = [_normalise(t) for t in texts]
    hits = {i for i, t in enumerate(norm_texts) if t and f" {t} " in norm_body}
    # An option inside a longer matching option (vitamin b / vitamin b12) is not a separate hit.
    hits = {i for i in hits if not any(j != i and f" {norm_texts[i]} " in f" {norm_texts[j]} " for j in hits)}
    is_ynm = tuple(norm_texts) == _YES_NO_MAYBE
    if len(hits) == 1 and not is_ynm:
        return ParsedAnswer(hits.pop(), "option_text")

    if is_ynm:
        words = norm_body.split()
        # "Yes, ..." decides; "Yes or no, ..." does not: no other label in the opening clause.
        clause = _normalise(re.split(r"[.,;:!?\n]", body.strip(), maxsplit=1)[0]).split()
        if clause and clause[0] in _YES_NO_MAYBE and len({w for w in clause if w in _YES_NO_MAYBE}) == 1:
            return ParsedAnswer(_YES_NO_MAYBE.index(clause[0]), "yes_no_maybe")
        m = re.search(r"answer\s*(?:is|:)?\s*(yes|no|maybe)\b", norm_body)
        if m:
            return ParsedAnswer(_YES_NO_MAYBE.index(m.group(1)), "yes_no_maybe")
        present = [w for w in _YES_NO_MAYBE if w in words]
        if len(present) == 1:
            return ParsedAnswer(_YES_NO_MAYBE.index(present[0]), "yes_no_maybe")
    return ParsedAnswer(None, UNPARSED)
