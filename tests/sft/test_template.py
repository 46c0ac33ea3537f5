import pytest

from megapmc.sft import template


def test_prompt_with_input_is_the_alpaca_template():
    prompt = template.build_prompt("Answer the question.", "What is 2+2?")
    assert prompt == (
        "Below is an instruction that describes a task, paired with an input that provides further context. "
        "Write a response that appropriately completes the request.\n\n"
        "### Instruction:\nAnswer the question.\n\n### Input:\nWhat is 2+2?\n\n### Response:"
    )


def test_prompt_without_input_drops_the_input_block():
    prompt = template.build_prompt("Say hello.", "  ")
    assert "### Input:" not in prompt and "paired with an input" not in prompt
    assert prompt.endswith("### Instruction:\nSay hello.\n\n### Response:")


def test_empty_instruction_is_refused():
    with pytest.raises(ValueError, match="non-empty instruction"):
        template.build_prompt(" ", "x")


def test_mcq_input_and_answer_formats():
    text = template.format_mcq_input("Which?", {"A": "one", "B": "two"}, context="Some abstract.")
    assert text == "###Context: Some abstract.\n###Question: Which?\n###Options:\nA. one\nB. two\n"
    assert template.format_mcq_input("Q", ["x", "y", "z"]).endswith("A. x\nB. y\nC. z\n")
    assert template.format_answer("b") == "###Answer: OPTION B IS CORRECT."
    assert template.format_answer("C", " Because. ") == "###Rationale: Because.\n###Answer: OPTION C IS CORRECT."
    with pytest.raises(ValueError):
        template.format_answer("AB")


def test_mcq_rendering_equals_the_released_medc_i_character_for_character(release_row_0):
    question = release_row_0["input"].split("\n")[0].removeprefix("###Question: ")
    options = {"A": "Ampicillin", "B": "Ceftriaxone", "C": "Doxycycline", "D": "Nitrofurantoin"}
    assert template.MCQ_INSTRUCTION == release_row_0["instruction"]
    assert template.format_mcq_input(question, options) == release_row_0["input"]
    assert template.format_answer("D") == release_row_0["output"]
    assert template.mcq_prompt(question, options) == template.build_prompt(release_row_0["instruction"],
                                                                           release_row_0["input"])


def test_zero_shot_evaluation_prompt_is_the_tuned_string():
    """The evaluation's generation prompt is built by the template's own function, from the same item."""
    from megapmc.evaluation import prompts
    from megapmc.benchmarks import MultipleChoiceItem

    item = MultipleChoiceItem(id="q1", question="Which?", letters=("A", "B"), texts=("one", "two"), gold=1)
    assert prompts.instruction_prompt(item, template.MCQ_INSTRUCTION) == template.mcq_prompt(
        "Which?", {"A": "one", "B": "two"})


@pytest.mark.parametrize("text, letter", [
    ("###Answer: OPTION B IS CORRECT.\n###Rationale: x", "B"),
    ("###Rationale: OPTION A IS CORRECT would ignore the rash.\n###Answer: OPTION C IS CORRECT.", "C"),
    (" ###Answer: option d is correct", "D"),
    ("The answer is B", None),
])
def test_parse_option_answer(text, letter):
    assert template.parse_option_answer(text) == letter
