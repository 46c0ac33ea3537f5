"""Turn a generated answer into an option index, saying which rule matched.

The text is first cleaned: Unicode NFKC, markdown emphasis (``**B**``, ``__B__``, backticks) removed,
the rationale (``###Rationale:``) and an echoed option list (two or more ``A. text`` lines) dropped,
and every **negated** mention blanked and remembered as rejected: ``Option A is incorrect``,
``OPTION A IS NOT CORRECT``, ``the answer is not B``, ``not C``, ``The answer is not yes``.
Then, in order (the first that decides wins):

1. ``option_is_correct``: PMC-LLaMA's own format, ``OPTION B IS CORRECT`` (any case; its evaluation
   script's regex ``(?i)OPTION [ABCD] IS CORRECT`` is :func:`pmc_llama_answer`, kept as a reference).
2. ``letter``: an explicit answer letter: ``Answer: B``, ``The answer is: (B)``, ``I would choose B``;
   else ``B.``/``(B)``/``B)`` at the start, or a line holding only ``B``. A bare capital at the start
   followed by a word (``A 23-year-old``) is English, not an answer.
3. ``option_text``: exactly one option's text occurs (normalised; an option contained in a longer
   matching option yields to it, ``vitamin B`` to ``vitamin B12``).
4. ``yes_no_maybe``: for yes/no/maybe options, the answer's opening clause starts with one of them and
   names no other, or ``answer is X``, or exactly one of them occurs as a word.

Several different explicit answers (``A or B``, ``The answer is A. ... The answer is C``, ``yes or
no``) give ``ambiguous``, with the candidates listed; a rejected option never counts. Ambiguous and
unparseable answers have ``index`` None: the caller counts them wrong and lists them.
"""
from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Optional, Sequence

UNPARSED = "unparsed"
AMBIGUOUS = "ambiguous"
_YES_NO_MAYBE = ("yes", "no", "maybe")
_JOIN = r"\s*(?:,|/|&|\bor\b|\band\b|\bor\s+option\b|\band\s+option\b)\s*"
_NEGATED_STATE = r"(?:not\s+(?:the\s+)?(?:correct|right|best|true|answer)|incorrect|wrong|false|ruled\s+out)"
_PMC_LLAMA = re.compile(r"(?i)OPTION [ABCD] IS CORRECT")


@dataclass(frozen=True)
class ParsedAnswer:
    index: Optional[int]
    rule: str  # option_is_correct | letter | option_text | yes_no_maybe | ambiguous | unparsed
    candidates: tuple[int, ...] = ()  # for ambiguous: the options named


def pmc_llama_answer(text: str) -> Optional[str]:
    """The letter PMC-LLaMA's ``SFT/eval/eval_medqa.py`` extracts: the first ``OPTION X IS CORRECT``."""
    m = _PMC_LLAMA.search(text)
    return m.group(0).split()[1].upper() if m else None


def _normalise(text: str) -> str:
    text = unicodedata.normalize("NFKC", text).lower()
    return " ".join(re.sub(r"[^\w%]+", " ", text).split())


def _clean(text: str, texts: Sequence[str]) -> str:
    text = unicodedata.normalize("NFKC", text)
    text = re.sub(r"\*\*|__|`|(?<!\w)\*|\*(?!\w)", "", text)  # markdown emphasis around words
    text = text.split("###Rationale:")[0]  # a rationale discusses every option; the answer part decides
    text = re.sub(r"###\s*Options?:", "\n", text)
    # An echoed option list ("A. text" on two or more lines) is the question, not the answer.
    echo = re.compile(r"^\s*[\(\[]?([A-J])[\)\]\.:]\s+(.+?)\s*$")
    norm_texts = {_normalise(t) for t in texts}
    lines = text.splitlines()
    echoed = [i for i, line in enumerate(lines)
              if (m := echo.match(line)) and _normalise(m.group(2)) in norm_texts]
    if len(echoed) >= 2:
        lines = [line for i, line in enumerate(lines) if i not in echoed]
    return "\n".join(lines)


def _blank(text: str, spans: list[tuple[int, int]]) -> str:
    chars = list(text)
    for start, end in spans:
        chars[start:end] = " " * (end - start)
    return "".join(chars)


def _rejections(text: str, cls: str, labels: Sequence[str]) -> tuple[set[str], list[tuple[int, int]]]:
    """Letters (upper case) or yes/no/maybe labels the text rules out, and the spans saying so."""
    letter = rf"[\(\[]?({cls})[\)\]]?(?!\w)"
    patterns = [
        rf"(?i:option|choice|answer)\s*(?i:{letter})\s*(?i:is|are|seems|appears)?\s*(?i:{_NEGATED_STATE})",
        rf"(?<![\w.]){letter}\s*(?i:is|seems)\s*(?i:{_NEGATED_STATE})",
        rf"(?i:answer|correct\s+option|correct\s+choice)\s*(?i:is|would\s+be|:)?\s*(?i:not)\s*(?i:option\s*)?{letter}",
        rf"(?i:\bnot|rule\s+out|exclude|eliminate)\s+(?i:option\s*)?{letter}",
    ]
    rejected, spans = set(), []
    for pattern in patterns:
        for m in re.finditer(pattern, text):
            rejected.add(m.group(1).upper())
            spans.append(m.span())
    if labels:
        for m in re.finditer(r"(?i)\bnot\s+(?:a\s+)?(yes|no|maybe)\b", text):
            rejected.add(m.group(1).lower())
            spans.append(m.span())
    return rejected, spans


def _explicit_letters(text: str, cls: str) -> list[set[str]]:
    """Every explicit answer in the text, each as the set of letters it names (``A or B``: two)."""
    one = rf"[\(\[]?({cls})[\)\]]?(?!\w)"
    patterns = [
        rf"(?i:option|choice)\s*[\(\[]?\s*((?i:{cls}))\s*[\)\]]?\s*(?i:is)\s*(?i:the\s*)?(?i:correct|right|best|answer)",
        rf"(?i:answer|correct\s+option|correct\s+choice|best\s+option|best\s+choice)\s*"
        rf"(?i:is|would\s+be|will\s+be|should\s+be|:|=|-)?\s*:?\s*(?i:option\s*|choice\s*)?{one}",
        rf"(?i:\bchoose|\bselect|\bpick|\bgo\s+with)\s+(?i:option\s*|choice\s*)?{one}",
    ]
    found = []
    for i, pattern in enumerate(patterns):
        for m in re.finditer(pattern, text):
            letters = {m.group(1).upper()}
            rest = text[m.end():]
            while (more := re.match(rf"{_JOIN}(?i:option\s*)?{one}", rest)) and i:
                letters.add(more.group(1).upper())
                rest = rest[more.end():]
            found.append((m.start(), i == 0, letters))
    return [letters for _, _, letters in sorted(found, key=lambda f: f[0])]


def _leading_letters(text: str, cls: str) -> set[str]:
    """``B``, ``B.``, ``(B)``, ``B)`` (or ``A or B``) at the start, or a line holding only a letter."""
    one = rf"[\(\[]?({cls})[\)\]]?"
    m = re.match(rf"^\s*{one}((?:{_JOIN}{one})*)\s*(?:[\)\]\.:,]|$)", text)
    if m:
        return {m.group(1)} | set(re.findall(cls, m.group(2)))
    lone = re.findall(rf"^\s*({cls})[\.\)]?\s*$", text, re.MULTILINE)
    return set(lone)


def _decide(letters: set[str], upper: list[str], rejected: set[str], rule: str) -> Optional[ParsedAnswer]:
    letters = {x for x in letters if x in upper} - rejected
    if len(letters) == 1:
        return ParsedAnswer(upper.index(letters.pop()), rule)
    if len(letters) > 1:
        return ParsedAnswer(None, AMBIGUOUS, tuple(sorted(upper.index(x) for x in letters)))
    return None


def parse_answer(text: str, letters: Sequence[str], texts: Sequence[str]) -> ParsedAnswer:
    """Parse ``text`` against options labelled ``letters`` with ``texts``."""
    upper = [x.upper() for x in letters]
    # Letters are matched as capitals only, except after "option": a lower-case "a" is the article.
    cls = "[" + "".join(re.escape(x) for x in upper) + "]"
    norm_texts = [_normalise(t) for t in texts]
    is_ynm = tuple(norm_texts) == _YES_NO_MAYBE
    body = _clean(text, texts)
    rejected, spans = _rejections(body, "[A-J]", _YES_NO_MAYBE if is_ynm else ())
    body = _blank(body, spans)

    answers = _explicit_letters(body, "[A-J]")
    pmc_style = [a for a in answers if len(a) == 1 and re.search(
        rf"(?i)option\s*[\(\[]?\s*{next(iter(a))}\s*[\)\]]?\s*is\s*(?:the\s*)?(?:correct|right|best|answer)", body)]
    named = set().union(*answers) if answers else set()
    if answers:
        rule = "option_is_correct" if pmc_style and set().union(*pmc_style) == named else "letter"
        decided = _decide(named, upper, rejected, rule)
        if decided:
            return decided
    decided = _decide(_leading_letters(body, cls), upper, rejected, "letter")
    if decided:
        return decided

    norm_body = f" {_normalise(body)} "
    if not is_ynm:
        hits = {i for i, t in enumerate(norm_texts) if t and f" {t} " in norm_body}
        # An option inside a longer matching option (vitamin b / vitamin b12) is not a separate hit.
        hits = {i for i in hits if not any(j != i and f" {norm_texts[i]} " in f" {norm_texts[j]} " for j in hits)}
        if len(hits) == 1:
            return ParsedAnswer(hits.pop(), "option_text")
        return ParsedAnswer(None, UNPARSED)

    labels = [x for x in _YES_NO_MAYBE if x not in rejected]
    m = re.search(r"answer\W*(?:is|would be)?\W*(yes|no|maybe)\b((?:\s*(?:or|and|/|,)\s*(?:yes|no|maybe)\b)*)",
                  body.lower())
    if m and m.group(2):
        named = {m.group(1), *re.findall(r"yes|no|maybe", m.group(2))}
        return ParsedAnswer(None, AMBIGUOUS, tuple(sorted(_YES_NO_MAYBE.index(x) for x in named)))
    # "Yes, ..." decides; "Yes or no, ..." does not: no other label in the opening clause.
    clause = _normalise(re.split(r"[.,;:!?\n]", body.strip(), maxsplit=1)[0]).split()
    if clause and clause[0] in labels and len({w for w in clause if w in _YES_NO_MAYBE}) == 1:
        return ParsedAnswer(_YES_NO_MAYBE.index(clause[0]), "yes_no_maybe")
    if m and m.group(1) in labels:
        return ParsedAnswer(_YES_NO_MAYBE.index(m.group(1)), "yes_no_maybe")
    present = [w for w in labels if w in norm_body.split()]
    if len(present) == 1:
        return ParsedAnswer(_YES_NO_MAYBE.index(present[0]), "yes_no_maybe")
    return ParsedAnswer(None, UNPARSED)
