"""The answer parser over a table of answer styles, with PMC-LLaMA's own extraction regex as a reference.

Each row: generated text, the index we expect (None: counted wrong), the rule, and what PMC-LLaMA's
``SFT/eval/eval_medqa.py`` regex ``(?i)OPTION [ABCD] IS CORRECT`` (first match) extracts. Where the two
differ it is on purpose: PMC-LLaMA's regex reads only its own format, and it reads "Option A is
correct? No: option B is correct" as A.
"""
import pytest

from megapmc.evaluation.parser import AMBIGUOUS, UNPARSED, parse_answer, pmc_llama_answer

MC_LETTERS = ("A", "B", "C", "D")
MC_TEXTS = ("Ampicillin", "Vitamin B", "Vitamin B12", "Nitrofurantoin")
YNM_LETTERS = ("A", "B", "C")
YNM_TEXTS = ("yes", "no", "maybe")
OPT, LET, TXT, YNM = "option_is_correct", "letter", "option_text", "yes_no_maybe"

MC_CASES = [
    # (generated text, expected index or None, rule, PMC-LLaMA regex's letter)
    # PMC-LLaMA's own answer format
    ("###Answer: OPTION D IS CORRECT.", 3, OPT, "D"),
    ("###Answer: OPTION D IS CORRECT.\n###Rationale: Option A is not safe in pregnancy.", 3, OPT, "D"),
    ("option b is correct", 1, OPT, "B"),
    ("Option C is correct.", 2, OPT, "C"),
    ("OPTION (C) IS THE CORRECT", 2, OPT, None),
    ("Option A is incorrect because of resistance; option C is correct.", 2, OPT, "C"),
    ("A. Ampicillin? No. OPTION D IS CORRECT.", 3, OPT, "D"),
    ("###Answer: OPTION B IS CORRECT.\n###Rationale: Nitrofurantoin is discussed.", 1, OPT, "B"),
    ("OPTION A IS CORRECT", 0, OPT, "A"),
    ("option d is the correct answer", 3, OPT, None),
    ("Option B is the best choice here.", 1, OPT, None),
    ("Option D is right.", 3, OPT, None),
    # negations: a rejected option never counts
    ("Option A is incorrect", None, UNPARSED, None),
    ("OPTION A IS NOT CORRECT", None, UNPARSED, None),
    ("OPTION A IS NOT CORRECT. OPTION B IS CORRECT.", 1, OPT, "B"),
    ("Option C is wrong; option D is correct.", 3, OPT, "D"),
    ("The answer is not A.", None, UNPARSED, None),
    ("The answer is not A, it is C. Answer: C", 2, LET, None),
    ("It is not B.", None, UNPARSED, None),
    ("Not A. The answer is D.", 3, LET, None),
    ("We can rule out A; the answer is B.", 1, LET, None),
    ("Option A is false and option D is the answer", 3, OPT, None),
    ("A is incorrect, B is incorrect, C is correct: the answer is C", 2, LET, None),
    ("Option B is not the answer.", None, UNPARSED, None),
    ("option c is incorrect", None, UNPARSED, None),
    ("Exclude option A. Answer: B", 1, LET, None),
    # several answers: ambiguous, counted wrong and listed
    ("A or B", None, AMBIGUOUS, None),
    ("The answer is A or B.", None, AMBIGUOUS, None),
    ("Answer: B or C", None, AMBIGUOUS, None),
    ("The answer is A and C", None, AMBIGUOUS, None),
    ("Answer: A/B", None, AMBIGUOUS, None),
    ("The answer is A. Actually, the answer is C.", None, AMBIGUOUS, None),
    ("Option A is correct. Option B is correct.", None, AMBIGUOUS, "A"),
    ("(A) or (D)", None, AMBIGUOUS, None),
    ("B, C", None, AMBIGUOUS, None),
    ("I would choose A or option D", None, AMBIGUOUS, None),
    # explicit letters
    ("The answer is: A", 0, LET, None),
    ("The answer is: (B)", 1, LET, None),
    ("The answer is C.", 2, LET, None),
    ("The correct answer is (A) Ampicillin", 0, LET, None),
    ("Answer: B", 1, LET, None),
    ("Answer:B", 1, LET, None),
    ("answer: D because it is safe in pregnancy", 3, LET, None),
    ("ANSWER: C", 2, LET, None),
    ("Answer - D", 3, LET, None),
    ("The correct option is B.", 1, LET, None),
    ("The best option is D", 3, LET, None),
    ("The correct answer would be option B", 1, LET, None),
    ("I would choose option D here.", 3, LET, None),
    ("I select C.", 2, LET, None),
    ("Let's go with B", 1, LET, None),
    ("The answer is [C]", 2, LET, None),
    ("Correct choice: A", 0, LET, None),
    # a letter at the start or alone on a line
    ("D", 3, LET, None),
    ("D.", 3, LET, None),
    ("(B)", 1, LET, None),
    ("B) Vitamin B", 1, LET, None),
    ("  C. Vitamin B12 is the answer", 2, LET, None),
    ("Let me think.\nD\n", 3, LET, None),
    ("C:", 2, LET, None),
    ("[A]", 0, LET, None),
    ("A 23-year-old woman needs nitrofurantoin.", 3, TXT, None),  # "A " is the article
    # markdown emphasis
    ("**B**", 1, LET, None),
    ("**Answer: C**", 2, LET, None),
    ("The answer is **D**.", 3, LET, None),
    ("*A*", 0, LET, None),
    ("__C__", 2, LET, None),
    ("**OPTION B IS CORRECT**", 1, OPT, "B"),
    ("`D`", 3, LET, None),
    ("**Answer:** B", 1, LET, None),
    ("The answer is **Nitrofurantoin**.", 3, TXT, None),
    ("**Option A is incorrect.** **Option C is correct.**", 2, OPT, "C"),
    # echoed option lists: the echo is not the answer
    ("A. Ampicillin\nB. Vitamin B\nC. Vitamin B12\nD. Nitrofurantoin\nAnswer: D", 3, LET, None),
    ("A. Ampicillin\nB. Vitamin B\nC. Vitamin B12\nD. Nitrofurantoin", None, UNPARSED, None),
    ("###Options:\nA. Ampicillin\nB. Vitamin B\nC. Vitamin B12\nD. Nitrofurantoin\nOPTION C IS CORRECT.", 2, OPT, "C"),
    ("(A) Ampicillin\n(B) Vitamin B\n(C) Vitamin B12\n(D) Nitrofurantoin\n\nThe answer is (A).", 0, LET, None),
    ("A) Ampicillin\nB) Vitamin B\nC) Vitamin B12\nD) Nitrofurantoin\nI pick B", 1, LET, None),
    ("A. Ampicillin\nB. Vitamin B\nC. Vitamin B12\nD. Nitrofurantoin\nNitrofurantoin", 3, TXT, None),
    ("D. Nitrofurantoin", 3, LET, None),  # one line is an answer, not an echo
    # option texts
    ("Nitrofurantoin", 3, TXT, None),
    ("The best treatment is nitrofurantoin, given for five days.", 3, TXT, None),
    ("Vitamin B12 deficiency explains it", 2, TXT, None),  # not Vitamin B: inside the longer match
    ("A pregnant woman should receive nitrofurantoin.", 3, TXT, None),
    ("ampicillin", 0, TXT, None),
    ("Give AMPICILLIN.", 0, TXT, None),
    ("Vitamin B", 1, TXT, None),
    # nothing usable
    ("a drug that is safe", None, UNPARSED, None),
    ("Either ampicillin or nitrofurantoin would work.", None, UNPARSED, None),  # two options mentioned
    ("", None, UNPARSED, None),
    ("I am not sure.", None, UNPARSED, None),
    ("Option E is correct", None, UNPARSED, None),  # no such option
    ("The answer is E", None, UNPARSED, None),
    ("answer is a mystery", None, UNPARSED, None),
    ("Ｄ", 3, LET, None),  # full-width letter, NFKC
]

YNM_CASES = [
    ("###Answer: OPTION A IS CORRECT.", 0, OPT, "A"),
    ("OPTION C IS CORRECT", 2, OPT, "C"),
    ("B", 1, LET, None),
    ("Yes", 0, YNM, None),
    ("yes, early mobilisation shortens the stay", 0, YNM, None),
    ("No.", 1, YNM, None),
    ("Maybe; the trial was small.", 2, YNM, None),
    ("The answer is no", 1, YNM, None),
    ("Based on the abstract, the answer: maybe", 2, YNM, None),
    ("The results suggest yes", 0, YNM, None),
    ("**Yes**", 0, YNM, None),
    ("The answer is **no**.", 1, YNM, None),
    ("YES", 0, YNM, None),
    ("Answer: Maybe", 2, YNM, None),
    ("The answer is not yes", None, UNPARSED, None),
    ("The answer is not yes; it is no.", 1, YNM, None),
    ("not maybe: the answer is yes", 0, YNM, None),
    ("The answer is yes or no", None, AMBIGUOUS, None),
    ("Answer: yes/maybe", None, AMBIGUOUS, None),
    ("It is unclear whether this helps", None, UNPARSED, None),
    ("yes or no, it is hard to say", None, UNPARSED, None),
    ("OPTION B IS NOT CORRECT", None, UNPARSED, None),
    ("Option A is incorrect. OPTION B IS CORRECT.", 1, OPT, "B"),
    ("A or C", None, AMBIGUOUS, None),
]


@pytest.mark.parametrize("text,index,rule,pmc", MC_CASES)
def test_multiple_choice_answers(text, index, rule, pmc):
    parsed = parse_answer(text, MC_LETTERS, MC_TEXTS)
    assert (parsed.index, parsed.rule) == (index, rule)
    assert pmc_llama_answer(text) == pmc


@pytest.mark.parametrize("text,index,rule,pmc", YNM_CASES)
def test_yes_no_maybe_answers(text, index, rule, pmc):
    parsed = parse_answer(text, YNM_LETTERS, YNM_TEXTS)
    assert (parsed.index, parsed.rule) == (index, rule)
    assert pmc_llama_answer(text) == pmc


def test_the_table_is_large():
    assert len(MC_CASES) + len(YNM_CASES) >= 100


def test_ambiguous_answers_list_their_candidates():
    assert parse_answer("The answer is A or B.", MC_LETTERS, MC_TEXTS).candidates == (0, 1)
    assert parse_answer("The answer is yes or no", YNM_LETTERS, YNM_TEXTS).candidates == (0, 1)


def test_we_agree_with_pmc_llama_wherever_its_regex_finds_one_unnegated_answer():
    for text, index, rule, pmc in MC_CASES + YNM_CASES:
        if pmc is not None and rule == OPT:
            assert "ABCD"[index] == pmc, text
