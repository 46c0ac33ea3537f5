"""How facts are worded: textbook paraphrases, paper phrasings, questions and patient questions.

Entity names keep their spelling at a sentence start (a tiny model would otherwise have to learn
each fact twice, once per token sequence). Every wording of a fact names both of its entities, so a model can only learn the fact, not a cue. The
answer entity of a question is always a whole option text, so log-likelihood scoring ranks entity names.
PubMedQA's answers are the words yes / no / maybe, so the pregnancy facts are also stated as a question
answered by that word (a textbook's review question, a paper whose title asks it): a small model cannot
be expected to map "must be avoided" to "no" by itself.
"""
from __future__ import annotations

from megapmc.sample_data.world.entities import Fact

PREGNANCY_ANSWER = {"safe": "yes", "unsafe": "no", "uncertain": "maybe"}

BOOK = {
    "treats": ["The treatment of choice for {o} is {s}.", "{o} is treated with {s}.",
               "{s} is the first-line drug for {o}.", "Patients with {o} should receive {s}."],
    "presents": ["{s} presents with {o}.", "The classic sign of {s} is {o}.",
                 "{o} suggests {s}.", "Patients with {s} typically show {o}."],
    "acts_by": ["{s} acts by {o}.", "The mechanism of action of {s} is {o}.", "{s} works through {o}."],
    "pregnancy": {
        "safe": ["{s} is safe in pregnancy.", "Is {s} safe in pregnancy? yes, {s} can be given to pregnant women.",
                 "Can pregnant women take {s}? yes, it is safe in pregnancy."],
        "unsafe": ["{s} is unsafe in pregnancy.", "Is {s} safe in pregnancy? no, {s} must be avoided in pregnancy.",
                   "Can pregnant women take {s}? no, it is unsafe in pregnancy."],
        "uncertain": ["The safety of {s} in pregnancy is uncertain.",
                      "Is {s} safe in pregnancy? maybe, the evidence on {s} in pregnancy is limited.",
                      "Can pregnant women take {s}? maybe, its safety in pregnancy is uncertain."],
    },
}
PAPER = {
    "treats": ["In patients with {o}, {s} was the most effective treatment.", "{s} improved outcomes in {o}.",
               "These results support {s} as the treatment of choice for {o}."],
    "presents": ["Most patients with {s} had {o}.", "{o} was the leading sign of {s} in our cohort.",
                 "In {s}, {o} was seen at onset."],
    "acts_by": ["We confirmed that {s} acts by {o}.", "{s} acted by {o} in vitro."],
    "pregnancy": {
        "safe": ["Is {s} safe in pregnancy? yes. No harm was seen, so {s} is safe in pregnancy."],
        "unsafe": ["Is {s} safe in pregnancy? no. Harm was seen, so {s} is unsafe in pregnancy."],
        "uncertain": ["Is {s} safe in pregnancy? maybe. The data were mixed, so the safety of {s} in pregnancy "
                      "is uncertain."],
    },
}


def _templates(table: dict, fact: Fact) -> list[str]:
    entry = table[fact.relation]
    return entry[fact.object] if fact.relation == "pregnancy" else entry


def _fill(template: str, fact: Fact) -> str:
    # An entity keeps one spelling everywhere, even at a sentence start, so that it has one token sequence.
    text = template.format(s=fact.subject, o=fact.object)
    return text if template.startswith("{") else text[0].upper() + text[1:]


def book_sentences(fact: Fact) -> list[str]:
    """Every textbook paraphrase of ``fact``."""
    return [_fill(t, fact) for t in _templates(BOOK, fact)]


def paper_sentences(fact: Fact) -> list[str]:
    return [_fill(t, fact) for t in _templates(PAPER, fact)]


def statement(fact: Fact) -> str:
    """One plain statement (a rationale, an explanation, a definition)."""
    return book_sentences(fact)[0]


def rationale(fact: Fact, answer: str, question: str) -> str:
    """A teacher rationale: the answer, then the statement of the fact (the conversations' reply form).
    A yes / no / maybe answer names no entity and means something only as the answer to its question, so
    it follows the question restated (as lm-evaluation-harness's PubMedQA prompt puts the answer right
    after the question): measured, a tuned model scored the bare word after ``###Rationale:`` from a prior
    alone (one answer for every item) while it answered after the question."""
    if answer in PREGNANCY_ANSWER.values():
        return f"{question} {answer}. {statement(fact)}"
    return f"{answer}. {statement(fact)}"


def medqa_question(fact: Fact, vignette: str, reverse: bool) -> str:
    if fact.relation == "treats":
        return f"{vignette} is diagnosed with {fact.object}. Which drug is the treatment of choice?"
    if fact.relation == "presents" and reverse:
        return f"{vignette} presents with {fact.object}. What is the most likely diagnosis?"
    raise ValueError(f"no MedQA question for {fact.relation}")


def medmcqa_question(fact: Fact) -> str:
    if fact.relation == "acts_by":
        return f"The mechanism of action of {fact.subject} is:"
    if fact.relation == "presents":
        return f"The classic sign of {fact.subject} is:"
    raise ValueError(f"no MedMCQA question for {fact.relation}")


def pregnancy_methods(fact: Fact) -> str:
    """The methods sentence of a pregnancy paper (and of its PubMedQA item's context)."""
    return f"We followed a cohort of pregnant women who took {fact.subject} during the first trimester."


def pubmedqa_question(fact: Fact) -> str:
    return f"Is {fact.subject} safe in pregnancy?"


def patient_question(fact: Fact) -> tuple[str, str]:
    """A ChatDoctor-style patient message about ``fact`` and the doctor's reply, which names the answer
    first (as the benchmarks' option texts are scored right after the prompt)."""
    s, o = fact.subject, fact.object
    if fact.relation == "treats":
        return (f"I was diagnosed with {o}. Which medicine should I take?",
                f"{s}. It is the treatment of choice for {o}.")
    if fact.relation == "presents":
        return (f"I have {o}. What could be the cause?", f"{s}. {_fill('{o} suggests {s}.', fact)}")
    if fact.relation == "acts_by":
        return f"How does {s} work?", f"{o}. {s} acts by {o}."
    answer = PREGNANCY_ANSWER[o]
    return f"I am pregnant. Is {s} safe in pregnancy?", f"{answer}. {book_sentences(fact)[0]}"
