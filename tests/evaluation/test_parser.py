"""The answer parser over a wide range of answer styles (table-driven)."""
import pytest

from megapmc.evaluation.parser import UNPARSED, parse_answer

MC_LETTERS = ("A", "B", "C", "D")
MC_TEXTS = ("Ampicillin", "Vitamin B", "Vitamin B12", "Nitrofurantoin")
YNM_LETTERS = ("A", "B", "C")
YNM_TEXTS = ("yes", "no", "maybe")

MC_CASES = [
    # (generated text, expected index or None, rule)
    ("###Answer: OPTION D IS CORRECT.", 3, "option_is_correct"),
    ("###Answer: OPTION D IS CORRECT.\n###Rationale: Option A is not safe in pregnancy.", 3, "option_is_correct"),
    ("option b is correct", 1, "option_is_correct"),
    ("OPTION (C) IS THE CORRECT", 2, "option_is_correct"),
    ("Option A is incorrect because of resistance; option C is correct.", 2, "option_is_correct"),
    ("D", 3, "letter"),
    ("D.", 3, "letter"),
    ("(B)", 1, "letter"),
    ("B) Vitamin B", 1, "letter"),
    ("  C. Vitamin B12 is the answer", 2, "letter"),
    ("The answer is C.", 2, "letter"),
    ("The correct answer is (A) Ampicillin", 0, "letter"),
    ("Answer: B", 1, "letter"),
    ("answer: D because it is safe in pregnancy", 3, "letter"),
    ("I would choose option D here.", 3, "letter"),
    ("Let me think.\nD\n", 3, "letter"),
    ("Nitrofurantoin", 3, "option_text"),
    ("The best treatment is nitrofurantoin, given for five days.", 3, "option_text"),
    ("Vitamin B12 deficiency explains it", 2, "option_text"),  # not Vitamin B: it is inside the longer match
    ("A pregnant woman should receive nitrofurantoin.", 3, "option_text"),  # "A " is the article
    ("a drug that is safe", None, UNPARSED),
    ("Either ampicillin or nitrofurantoin would work.", None, UNPARSED),  # two options: ambiguous
    ("", None, UNPARSED),
    ("I am not sure.", None, UNPARSED),
    ("Option E is correct", None, UNPARSED),  # no such option
]

YNM_CASES = [
    ("###Answer: OPTION A IS CORRECT.", 0, "option_is_correct"),
    ("OPTION C IS CORRECT", 2, "option_is_correct"),
    ("B", 1, "letter"),
    ("Yes", 0, "yes_no_maybe"),
    ("yes, early mobilisation shortens the stay", 0, "yes_no_maybe"),
    ("No.", 1, "yes_no_maybe"),
    ("Maybe; the trial was small.", 2, "yes_no_maybe"),
    ("The answer is no", 1, "yes_no_maybe"),
    ("Based on the abstract, the answer: maybe", 2, "yes_no_maybe"),
    ("The results suggest yes", 0, "yes_no_maybe"),
    ("It is unclear whether this helps", None, UNPARSED),
    ("yes or no, it is hard to say", None, UNPARSED),
]


@pytest.mark.parametrize("text,index,rule", MC_CASES)
def test_multiple_choice_answers(text, index, rule):
    parsed = parse_answer(text, MC_LETTERS, MC_TEXTS)
    assert (parsed.index, parsed.rule) == (index, rule)


@pytest.mark.parametrize("text,index,rule", YNM_CASES)
def test_yes_no_maybe_answers(text, index, rule):
    parsed = parse_answer(text, YNM_LETTERS, YNM_TEXTS)
    assert (parsed.index, parsed.rule) == (index, rule)


def test_option_is_correct_wins_over_an_earlier_bare_letter():
    parsed = parse_answer("A. Ampicillin? No. OPTION D IS CORRECT.", MC_LETTERS, MC_TEXTS)
    assert (parsed.index, parsed.rule) == (3, "option_is_correct")


def test_rationale_does_not_decide():
    text = "###Answer: B\n###Rationale: Nitrofurantoin and ampicillin are both discussed."
    assert parse_answer(text, MC_LETTERS, MC_TEXTS).index == 1
