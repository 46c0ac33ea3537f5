"""Prompts: lm-evaluation-harness's for log-likelihood scoring, PMC-LLaMA's for generation.

Log-likelihood prompts reproduce the harness tasks ``medqa_4options``, ``medmcqa`` and ``pubmedqa``
(their ``doc_to_text``/``doc_to_choice``) character for character: fields are inserted as stored, with
no stripping, so the same model gives the same per-item log-likelihoods there and here.
The continuation scored for option ``i`` is ``TARGET_DELIMITER + choices[i]`` (``" A"``,
``" yes"``); few-shot examples are ``prompt + " " + gold choice`` joined by ``FEWSHOT_DELIMITER``.

Generation prompts put the question in PMC-LLaMA's instruction format (``###Question:`` /
``###Options:``) inside the Alpaca template of ``megapmc.sft.template``; the model answers
``###Answer: OPTION X IS CORRECT.``.
"""
from __future__ import annotations

from megapmc.benchmarks import MultipleChoiceItem
from megapmc.sft import template

TARGET_DELIMITER = " "
FEWSHOT_DELIMITER = "\n\n"
# Where a generated response ends if the model runs on into a new prompt of its own (base models do):
# the parser reads only what comes before.
STOP_MARKERS = ("### Instruction:", "###Question:", "### Input:", "Below is an instruction")


def _options_block(item: MultipleChoiceItem) -> str:
    return "".join(f"{letter}. {text}\n" for letter, text in zip(item.letters, item.texts))


def harness_medqa(item: MultipleChoiceItem) -> str:
    """``medqa_4options``: ``Question: q\\nA. a\\n...D. d\\nAnswer:``."""
    return f"Question: {item.question}\n{_options_block(item)}Answer:"


def harness_medmcqa(item: MultipleChoiceItem) -> str:
    """``medmcqa``: ``Question: q\\nChoices:\\nA. a\\n...D. d\\nAnswer:``."""
    return f"Question: {item.question}\nChoices:\n{_options_block(item)}Answer:"


def harness_pubmedqa(item: MultipleChoiceItem) -> str:
    """``pubmedqa``: ``Abstract: contexts joined by newlines\\nQuestion: q\\nAnswer:``."""
    return "Abstract: {}\nQuestion: {}\nAnswer:".format("\n".join(item.contexts), item.question)


def letter_choices(item: MultipleChoiceItem) -> list[str]:
    return list(item.letters)


def text_choices(item: MultipleChoiceItem) -> list[str]:
    return list(item.texts)


def instruction_prompt(item: MultipleChoiceItem, instruction: str) -> str:
    """The Alpaca prompt holding PMC-LLaMA's question format, ending with ``### Response:``: the very
    string instruction tuning trained on (``megapmc.sft.template.mcq_prompt`` owns it)."""
    context = " ".join(item.contexts) if item.contexts else None
    return template.mcq_prompt(item.question, dict(zip(item.letters, item.texts)), context, instruction)


def instruction_response(item: MultipleChoiceItem) -> str:
    """The answer a PMC-LLaMA-tuned model gives (the target of a few-shot example in generation mode)."""
    return template.format_answer(item.gold_letter)


def cut_at_stop(text: str) -> str:
    """``text`` up to the first ``STOP_MARKERS`` entry (the whole of it if none occurs)."""
    positions = [i for i in (text.find(m) for m in STOP_MARKERS) if i >= 0]
    return text[:min(positions)] if positions else text
