"""PMC-LLaMA's prompt template and answer formats, shared by instruction tuning and evaluation.

**Prompt.** PMC-LLaMA instruction-tunes with the Alpaca template::

    Below is an instruction that describes a task, paired with an input that provides further
    context. Write a response that appropriately completes the request.

    ### Instruction:
    {instruction}

    ### Input:
    {input}

    ### Response:

(without the ``### Input:`` block and the words ", paired with an input ..." when the input is empty).
The response follows ``### Response:`` directly. ``megapmc.sft.dataset`` tokenises the prompt and the
response separately and concatenates the ids, so the label mask falls exactly on the response tokens
and the evaluation's generation mode, which feeds the encoded prompt alone, sees the same ids.

**Multiple-choice input** (MedQA-USMLE, MedMCQA, PubMedQA)::

    ###Question: A 23-year-old woman ...
    ###Options:
    A. Ampicillin
    B. Ceftriaxone

PubMedQA puts its abstract first, as ``###Context: ...`` on its own line.

**Answers.** A multiple-choice response starts ``###Answer: OPTION B IS CORRECT.``; when a rationale is
known it follows on the next line as ``###Rationale: ...``. The answer comes first so that a generated
answer can be parsed (``parse_option_answer``) before the rationale is finished.
"""
from __future__ import annotations

import re

PROMPT_INPUT = (
    "Below is an instruction that describes a task, paired with an input that provides further context. "
    "Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:"
)
PROMPT_NO_INPUT = (
    "Below is an instruction that describes a task. "
    "Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Response:"
)
RESPONSE_MARKER = "### Response:"

# PMC-LLaMA's instructions for benchmark-style questions (its evaluation script uses the first).
MCQ_INSTRUCTION = (
    "You're a doctor, kindly address the medical queries according to the patient's account. "
    "Answer with the best option directly."
)
MCQ_RATIONALE_INSTRUCTION = (
    "You're a doctor, kindly address the medical queries according to the patient's account. "
    "Answer with the best option, then explain the reasoning behind it."
)
PUBMEDQA_INSTRUCTION = (
    "As an expert doctor in clinical science and medical knowledge, can you tell me if the following "
    "statement is correct? Answer with the best option, then explain the reasoning behind it."
)
PUBMEDQA_OPTIONS = ("yes", "no", "maybe")

OPTION_LETTERS = "ABCDEFGHIJ"
_OPTION_ANSWER_RE = re.compile(r"OPTION\s+([A-J])\s+IS\s+CORRECT", re.IGNORECASE)


def build_prompt(instruction: str, input: str = "") -> str:  # noqa: A002 - the field's name in the data
    """The Alpaca prompt for one record, ending with ``### Response:`` (the response follows directly)."""
    if not instruction.strip():
        raise ValueError("an instruction record needs a non-empty instruction")
    if input.strip():
        return PROMPT_INPUT.format(instruction=instruction, input=input)
    return PROMPT_NO_INPUT.format(instruction=instruction)


def format_options(options: dict[str, str] | list[str]) -> str:
    """``A. text`` lines; a list is lettered A, B, C ... in order."""
    if isinstance(options, dict):
        items = list(options.items())
    else:
        items = list(zip(OPTION_LETTERS, options))
    return "\n".join(f"{letter}. {text}" for letter, text in items)


def format_mcq_input(question: str, options: dict[str, str] | list[str], context: str | None = None) -> str:
    """PMC-LLaMA's multiple-choice input: ``###Question:``, ``###Options:`` and, first, ``###Context:``."""
    parts = []
    if context:
        parts.append(f"###Context: {context.strip()}")
    parts.append(f"###Question: {question.strip()}")
    parts.append("###Options:\n" + format_options(options))
    return "\n".join(parts)


def format_answer(letter: str, rationale: str | None = None) -> str:
    """``###Answer: OPTION B IS CORRECT.`` and, when given, ``\\n###Rationale: ...``."""
    letter = letter.strip().upper()
    if len(letter) != 1 or letter not in OPTION_LETTERS:
        raise ValueError(f"answer option must be one letter A-J, got {letter!r}")
    answer = f"###Answer: OPTION {letter} IS CORRECT."
    if rationale and rationale.strip():
        answer += f"\n###Rationale: {rationale.strip()}"
    return answer


def parse_option_answer(text: str) -> str | None:
    """The letter of the first ``OPTION X IS CORRECT`` in a response, or ``None``."""
    match = _OPTION_ANSWER_RE.search(text)
    return match.group(1).upper() if match else None
