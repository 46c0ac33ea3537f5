"""The two scoring modes.

**Log-likelihood** (lm-evaluation-harness's ``multiple_choice``): for each option the continuation
``" " + choice`` is scored after the prompt; the input is BOS + prompt tokens, the score the summed
log-probability of the continuation tokens. ``acc`` takes the highest score, ``acc_norm`` the highest
score divided by the choice's length in characters (the harness's normalisation; for the one-letter
choices of MedQA and MedMCQA the two coincide). Ties go to the first option, as ``numpy.argmax`` does.

**Generation** (PMC-LLaMA's zero-shot instruction setting): the instruction prompt, greedy decoding,
and ``megapmc.evaluation.parser`` on the response up to any new prompt the model starts on its own
(``prompts.STOP_MARKERS``); an unparseable answer is wrong and counted.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Optional

from megapmc.evaluation.backends import CausalLMBackend, Tokenizer
from megapmc.evaluation.fewshot import FewShotSampler
from megapmc.evaluation.parser import UNPARSED, parse_answer
from megapmc.evaluation.prompts import TARGET_DELIMITER, cut_at_stop, instruction_prompt, instruction_response
from megapmc.evaluation.tasks import MultipleChoiceItem, Task


@dataclass
class ItemResult:
    """One line of ``samples_TASK.jsonl``."""

    id: str
    prompt: str
    gold: str  # the gold choice: a letter, or yes/no/maybe
    chosen: Optional[str]  # None: unparseable generation
    correct: bool
    choices: list[str]
    loglikelihoods: Optional[list[float]] = None
    chosen_norm: Optional[str] = None
    correct_norm: Optional[bool] = None
    generation: Optional[str] = None
    parse_rule: Optional[str] = None
    extra: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        return {k: v for k, v in asdict(self).items() if v is not None and v != {}}


def encode_pair(tokenizer: Tokenizer, context: str, continuation: str) -> tuple[list[int], list[int]]:
    """``(BOS + context ids, continuation ids)``, split the harness's way: trailing whitespace of the
    context moves to the continuation, the whole string is encoded once and the continuation is what follows
    the context's own tokens, so tokens merging across the boundary are scored as the model sees them."""
    n_space = len(context) - len(context.rstrip())
    if n_space:
        context, continuation = context[:-n_space], context[-n_space:] + continuation
    whole = tokenizer.encode(context + continuation)
    ctx = tokenizer.encode(context)
    return [tokenizer.bos_id] + ctx, whole[len(ctx):]


def _truncation(num_tokens: int, room: int) -> dict:
    """``{"truncated_tokens": k}`` when the backend will drop ``k`` tokens from the prompt's left."""
    return {"truncated_tokens": num_tokens - room} if num_tokens > room else {}


def _argmax(values: list[float]) -> int:
    return max(range(len(values)), key=lambda i: (values[i], -i))


def score_loglik(backend: CausalLMBackend, task: Task, items: list[MultipleChoiceItem],
                 fewshot: FewShotSampler) -> list[ItemResult]:
    def render_example(ex: MultipleChoiceItem) -> str:
        return task.harness_prompt(ex) + TARGET_DELIMITER + task.harness_choices(ex)[ex.gold]

    prompts, groups = [], []
    for item in items:
        prompt = fewshot.prefix(item, render_example) + task.harness_prompt(item)
        pairs = [encode_pair(backend.tokenizer, prompt, TARGET_DELIMITER + c) for c in task.harness_choices(item)]
        groups.append((pairs[0][0], [cont for _, cont in pairs]))  # every choice shares the context's ids
        prompts.append(prompt)
    scores = backend.loglikelihood_grouped(groups)
    results = []
    for item, prompt, (ctx, conts), item_scores in zip(items, prompts, groups, scores):
        choices = task.harness_choices(item)
        lls = [s.logprob for s in item_scores]
        best = _argmax(lls)
        best_norm = _argmax([ll / len(c) for ll, c in zip(lls, choices)])
        results.append(ItemResult(
            id=item.id, prompt=prompt, gold=choices[item.gold], chosen=choices[best], correct=best == item.gold,
            choices=choices, loglikelihoods=lls, chosen_norm=choices[best_norm], correct_norm=best_norm == item.gold,
            extra={"is_greedy": [s.is_greedy for s in item_scores],
                   **_truncation(len(ctx) + max(map(len, conts)) - 1, backend.max_length)},
        ))
    return results


def score_generate(backend: CausalLMBackend, task: Task, items: list[MultipleChoiceItem],
                   fewshot: FewShotSampler, max_new_tokens: int) -> list[ItemResult]:
    def render_example(ex: MultipleChoiceItem) -> str:
        return instruction_prompt(ex, task.instruction) + instruction_response(ex)

    tok = backend.tokenizer
    prompts = [fewshot.prefix(item, render_example) + instruction_prompt(item, task.instruction) for item in items]
    prompt_ids = [[tok.bos_id] + tok.encode(p) for p in prompts]
    generated = backend.generate(prompt_ids, max_new_tokens)
    results = []
    for item, prompt, ids, p_ids in zip(items, prompts, generated, prompt_ids):
        text = tok.decode(ids)
        parsed = parse_answer(cut_at_stop(text), item.letters, item.texts)
        choices = task.harness_choices(item)  # gold and chosen read as in log-likelihood mode
        results.append(ItemResult(
            id=item.id, prompt=prompt, gold=choices[item.gold],
            chosen=None if parsed.index is None else choices[parsed.index], correct=parsed.index == item.gold,
            choices=choices, generation=text, parse_rule=parsed.rule,
            extra={**_truncation(len(p_ids), backend.max_length - max_new_tokens),
                   **({"candidates": [choices[i] for i in parsed.candidates]} if parsed.candidates else {})},
        ))
    return results


__all__ = ["ItemResult", "UNPARSED", "encode_pair", "score_loglik", "score_generate"]
