"""Score one model of the ablation: three benchmarks, the forgetting check and the answer format.

- **Accuracy** (zero-shot, cloze): the prompt is the instruction template's (``template.build_prompt`` with
  the task's PMC-LLaMA instruction and the ``###Context:``/``###Question:`` input MedC-I tunes on) without
  the option list, followed by the start of a MedC-I rationale response (``###Rationale:``), and the
  options are ranked by the log-likelihood of their *text* after it
  (``" " + option``, split as lm-evaluation-harness splits context and continuation:
  ``scoring.encode_pair``), as the harness's cloze formulations (ARC, MMLU cloze) do. Two measured
  reasons, on this scale: a model of 0.63M parameters does not learn to point from a letter to an
  option's meaning (the harness's MedQA/MedMCQA score letters), and with the options listed in the prompt
  it copies from the list instead of recalling (docs/ablation.md). The ``###Rationale:`` opener is needed
  since responses are tokenised as the prompt's continuation (as PMC-LLaMA's ``SFT/train.py``): a tuned
  model never sees a word-start piece right after ``### Response:``, so an option scored there measures
  that surprise, not the fact (measured: the full recipe at chance without the opener, 40% with it).
  95% CI: Wilson, as ``tools/evaluate.py``.
- **Forgetting** (what the 1 part general text in 15:4:1 is for): perplexity on held-out general text.
- **Answer format**: the share of greedy answers to the same prompts that PMC-LLaMA's parser can read
  (``###Answer: OPTION X IS CORRECT.``), i.e. whether the model has learnt to answer in the format.

Everything goes through megapmc.evaluation's public functions, so a change to the template, the
tokenisation of a prompt/continuation pair or the parser shows up here.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

from megapmc.evaluation.backends import CausalLMBackend
from megapmc.evaluation.fewshot import FewShotSampler
from megapmc.evaluation.parser import UNPARSED
from megapmc.evaluation.report import wilson_interval
from megapmc.evaluation.scoring import encode_pair, score_generate
from megapmc.evaluation.tasks import MultipleChoiceItem, get_task
from megapmc.sft import template

TASKS = ("medqa", "medmcqa", "pubmedqa")
TASK_TITLES = {"medqa": "MedQA", "medmcqa": "MedMCQA", "pubmedqa": "PubMedQA"}


@dataclass
class TaskScore:
    n: int
    correct: int
    acc: float
    ci95: tuple[float, float]
    chance: float  # 1 / options: what guessing scores on average
    parseable: int  # greedy answers in the instruction format

    def cell(self) -> str:
        return f"{100 * self.acc:.1f} ({100 * self.ci95[0]:.0f}–{100 * self.ci95[1]:.0f})"


@dataclass
class RowScore:
    name: str
    tasks: dict[str, TaskScore]
    general_ppl: float

    @property
    def parseable_share(self) -> float:
        return sum(t.parseable for t in self.tasks.values()) / sum(t.n for t in self.tasks.values())


def cloze_prompt(item: MultipleChoiceItem, instruction: str) -> str:
    """The instruction prompt of ``item`` with its context and question but not its options, then the
    rationale's opening: ``###Rationale:``, and for a yes / no / maybe item its question restated (the
    world's teacher rationales answer such a question right after restating it: prose.rationale)."""
    context = " ".join(item.contexts) if item.contexts else None
    mcq_input = template.format_mcq_input(item.question, dict(zip(item.letters, item.texts)), context)
    opener = "###Rationale:"
    if item.texts == template.PUBMEDQA_OPTIONS:
        opener += " " + item.question
    return template.build_prompt(instruction, mcq_input.split("\n###Options:")[0]) + opener


def score_task(backend: CausalLMBackend, data_dir: str | Path, name: str, max_new_tokens: int = 16) -> TaskScore:
    task = get_task(name)
    items = task.load(data_dir, "test").items
    if not items:
        raise ValueError(f"{data_dir}: no {name} test items")
    prompts = [cloze_prompt(item, task.instruction) for item in items]
    requests = [encode_pair(backend.tokenizer, p, " " + text) for p, item in zip(prompts, items) for text in item.texts]
    scores = iter(backend.loglikelihood(requests))
    correct = 0
    for item in items:
        lls = [next(scores).logprob for _ in item.texts]
        correct += max(range(len(lls)), key=lambda i: (lls[i], -i)) == item.gold
    generated = score_generate(backend, task, items, FewShotSampler([], 0), max_new_tokens)
    parseable = sum(r.parse_rule != UNPARSED for r in generated)
    n = len(items)
    return TaskScore(n, correct, correct / n, wilson_interval(correct, n), 1 / len(items[0].texts), parseable)


def perplexity(backend: CausalLMBackend, jsonl: str | Path) -> float:
    """exp(mean negative log-likelihood per token) of every document's ``text``, each scored from BOS."""
    tok = backend.tokenizer
    docs = [json.loads(line)["text"] for line in Path(jsonl).read_text(encoding="utf-8").splitlines() if line.strip()]
    requests = [([tok.bos_id], tok.encode(d)[: backend.max_length - 1]) for d in docs]
    results = backend.loglikelihood(requests)
    total = sum(r.logprob for r in results)
    count = sum(len(cont) for _, cont in requests)
    return math.exp(-total / count)


def score_row(name: str, backend: CausalLMBackend, data_dir: str | Path, heldout_general: str | Path) -> RowScore:
    return RowScore(name, {t: score_task(backend, data_dir, t) for t in TASKS}, perplexity(backend, heldout_general))


def markdown(rows: list[RowScore]) -> str:
    head = ["Model", *(f"{TASK_TITLES[t]} acc % (95% CI)" for t in TASKS), "General text ppl ↓",
            "Answers in format %"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        cells = [row.name, *(row.tasks[t].cell() for t in TASKS), f"{row.general_ppl:.2f}",
                 f"{100 * row.parseable_share:.0f}"]
        lines.append("| " + " | ".join(cells) + " |")
    first = rows[0].tasks
    chance = ", ".join(f"{TASK_TITLES[t]} {100 * first[t].chance:.1f}% ({first[t].n} items)" for t in TASKS)
    lines.append(f"\nChance: {chance}.")
    return "\n".join(lines) + "\n"


def to_json(rows: list[RowScore]) -> list[dict]:
    return [{"name": r.name, "general_ppl": r.general_ppl, "parseable_share": r.parseable_share,
             "tasks": {t: asdict(s) for t, s in r.tasks.items()}} for r in rows]
