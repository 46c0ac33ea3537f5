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
The response follows ``### Response:`` directly and is tokenised as the continuation of the prompt
(``megapmc.sft.preprocess.encode_samples``), so its first token is the one the model generates after
the encoded prompt at inference, as in PMC-LLaMA's ``SFT/train.py`` (prompt + response encoded together,
the prompt's own length masked).

**Multiple-choice rows**, as the released MedC-I (``release.json`` of ``axiong/pmc_llama_instructions``,
its row 0 as shown by the Hugging Face datasets server)::

    instruction: "You're a doctor, kindly address the medical queries according to the patient's account.\n
                  Answer with the best option directly."
    input:       "###Question: A 23-year-old pregnant woman ...\n###Options:\nA. Ampicillin\n...D. Nitrofurantoin\n"
    output:      "###Answer: OPTION D IS CORRECT."

A newline separates the instruction's sentences and follows the last option. PubMedQA puts its abstract
first, as ``###Context: ...`` on its own line. A rationale row answers rationale first,
``###Rationale: ...`` then the answer line (``format_answer``). ``mcq_prompt`` is the one rendering of a
benchmark question: instruction tuning writes it and the evaluation's generation mode prompts with it.
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
    "You're a doctor, kindly address the medical queries according to the patient's account.\n"
    "Answer with the best option directly."
)
# The release's rationale rows were not visible to us; this wording asks for what they hold (the
# reasoning first, then the answer line), in the style of the same group's later training scripts.
MCQ_RATIONALE_INSTRUCTION = (
    "You're a doctor, kindly address the medical queries according to the patient's account.\n"
    "Let's solve this step-by-step. You should first give the reason for your choice. "
    "Then you should give the right answer index of the question."
)
PUBMEDQA_INSTRUCTION = (
    "As an expert doctor in clinical science and medical knowledge, can you tell me if the following "
    "statement is correct?\nAnswer with the best option, then explain the reasoning behind it."
)
# The release's PubMedQA rows answer with the abstract's own conclusion (LONG_ANSWER); their instruction
# was not visible to us, so this one asks for exactly that.
PUBMEDQA_LONG_ANSWER_INSTRUCTION = (
    "As an expert doctor in clinical science and medical knowledge, can you tell me if the following "
    "statement is correct?\nAnswer with the conclusion the abstract draws."
)
PUBMEDQA_OPTIONS = ("yes", "no", "maybe")

OPTION_LETTERS = "ABCDEFGHIJ"
_OPTION_ANSWER_RE = re.compile(r"OPTION\s+([A-J])\s+IS\s+CORRECT", re.IGNORECASE)
_ANSWER_LINE_RE = re.compile(r"###\s*Answer:\s*OPTION\s+([A-J])\s+IS\s+CORRECT", re.IGNORECASE)


def build_prompt(instruction: str, input: str = "") -> str:  # noqa: A002 - the field's name in the data
    """The Alpaca prompt for one record, ending with ``### Response:`` (the response follows directly)."""
    if not instruction.strip():
        raise ValueError("an instruction record needs a non-empty instruction")
    if input.strip():
        return PROMPT_INPUT.format(instruction=instruction, input=input)
    return PROMPT_NO_INPUT.format(instruction=instruction)


def format_options(options: dict[str, str] | list[str]) -> str:
    """``A. text`` lines, each ending with a newline; a list is lettered A, B, C ... in order."""
    if isinstance(options, dict):
        items = list(options.items())
    else:
        items = list(zip(OPTION_LETTERS, options))
    return "".join(f"{letter}. {text}\n" for letter, text in items)


def format_mcq_input(question: str, options: dict[str, str] | list[str], context: str | None = None) -> str:
    """PMC-LLaMA's multiple-choice input: ``###Question:``, ``###Options:`` and, first, ``###Context:``."""
    parts = []
    if context:
        parts.append(f"###Context: {context.strip()}")
    parts.append(f"###Question: {question.strip()}")
    parts.append("###Options:\n" + format_options(options))
    return "\n".join(parts)


def mcq_prompt(question: str, options: dict[str, str] | list[str], context: str | None = None,
               instruction: str = MCQ_INSTRUCTION) -> str:
    """The whole prompt of a benchmark question, as tuned on and as asked at zero-shot evaluation."""
    return build_prompt(instruction, format_mcq_input(question, options, context))


def format_answer(letter: str, rationale: str | None = None) -> str:
    """``###Answer: OPTION B IS CORRECT.``; with a rationale, ``###Rationale: ...`` first, then that line."""
    letter = letter.strip().upper()
    if len(letter) != 1 or letter not in OPTION_LETTERS:
        raise ValueError(f"answer option must be one letter A-J, got {letter!r}")
    answer = f"###Answer: OPTION {letter} IS CORRECT."
    if rationale and rationale.strip():
        return f"###Rationale: {rationale.strip()}\n{answer}"
    return answer


def parse_option_answer(text: str) -> str | None:
    """The letter of the ``###Answer:`` line (a rationale before it may discuss other options), else of
    the first ``OPTION X IS CORRECT``, or ``None``."""
    match = _ANSWER_LINE_RE.search(text) or _OPTION_ANSWER_RE.search(text)
    return match.group(1).upper() if match else None
