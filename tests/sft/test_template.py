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
    assert text == "###Context: Some abstract.\n###Question: Which?\n###Options:\nA. one\nB. two"
    assert template.format_mcq_input("Q", ["x", "y", "z"]).endswith("A. x\nB. y\nC. z")
    assert template.format_answer("b") == "###Answer: OPTION B IS CORRECT."
    assert template.format_answer("C", "Because.") == "###Answer: OPTION C IS CORRECT.\n###Rationale: Because."
    with pytest.raises(ValueError):
        template.format_answer("AB")


@pytest.mark.parametrize("text, letter", [
    ("###Answer: OPTION B IS CORRECT.\n###Rationale: x", "B"),
    (" ###Answer: option d is correct", "D"),
    ("The answer is B", None),
])
def test_parse_option_answer(text, letter):
    assert template.parse_option_answer(text) == letter
