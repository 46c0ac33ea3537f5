"""MedQA-, MedMCQA- and PubMedQA-style items about the world, in the benchmarks' original file layouts.

Test items ask only about ``heldout`` facts, training items (which MedC-I is built from) only about
``train`` facts. Distractors are drawn from entities whose fact of the same relation is in the same
split, so a model that learned the training facts cannot rule options out by elimination.

Formats (written from the public releases' documentation):

- MedQA (github.com/jind11/MedQA, ``data_clean/questions/US/4_options/phrases_no_exclude_*.jsonl``):
  JSON lines ``{"question", "answer", "options": {"A".."D"}, "meta_info", "answer_idx", "metamap_phrases"}``.
- MedMCQA (github.com/medmcqa/medmcqa, ``train.json`` / ``dev.json``): JSON lines ``{"question", "exp",
  "cop", "opa", "opb", "opc", "opd", "subject_name", "topic_name", "id", "choice_type"}``, ``cop`` 1-based.
- PubMedQA (github.com/pubmedqa/pubmedqa, ``data/ori_pqal.json`` and ``data/test_ground_truth.json``):
  ``{PMID: {"QUESTION", "CONTEXTS", "LABELS", "MESHES", "YEAR", "reasoning_required_pred",
  "reasoning_free_pred", "final_decision", "LONG_ANSWER"}}`` and ``{PMID: decision}``.
"""
from __future__ import annotations

import random
from dataclasses import dataclass

from megapmc.sample_data.world import prose
from megapmc.sample_data.world.entities import Fact, World

LETTERS = ("A", "B", "C", "D")
MEDQA_TEST = "medqa/US/4_options/phrases_no_exclude_test.jsonl"
MEDQA_TRAIN = "medqa/US/4_options/phrases_no_exclude_train.jsonl"
MEDMCQA_TEST, MEDMCQA_TRAIN = "medmcqa/dev.json", "medmcqa/train.json"
PUBMEDQA_ALL, PUBMEDQA_TEST = "pubmedqa/ori_pqal.json", "pubmedqa/test_ground_truth.json"


@dataclass
class Benchmarks:
    """Every file's content, by its path under the benchmark directory (JSON-lines files as lists)."""

    files: dict[str, list[dict] | dict]


def _options(rng: random.Random, gold: str, pool: list[str]) -> tuple[list[str], int]:
    options = [gold, *rng.sample([p for p in pool if p != gold], 3)]
    rng.shuffle(options)
    return options, options.index(gold)


def _vignette(rng: random.Random) -> str:
    return f"A {rng.randint(18, 80)}-year-old {rng.choice(['man', 'woman'])}"


def _medqa(rng: random.Random, world: World, split: str) -> list[dict]:
    rows = []
    for fact in world.of("treats", split) + world.of("presents", split)[0::2]:
        reverse = fact.relation == "presents"  # asks for the disease from its finding
        gold = fact.subject  # the drug, or the disease
        pool = [f.subject for f in world.of(fact.relation, split)]
        options, gold_i = _options(rng, gold, pool)
        question = prose.medqa_question(fact, _vignette(rng), reverse)
        rows.append({"question": question, "answer": gold, "options": dict(zip(LETTERS, options)),
                     "meta_info": "step1", "answer_idx": LETTERS[gold_i],
                     "metamap_phrases": [fact.object, "treatment of choice" if not reverse else "diagnosis"]})
    rng.shuffle(rows)
    return rows


def _medmcqa(rng: random.Random, world: World, split: str) -> list[dict]:
    rows = []
    for fact in world.of("acts_by", split) + world.of("presents", split)[1::2]:
        if fact.relation == "acts_by":
            pool, subject, topic = world.mechanisms, "Pharmacology", "Mechanism of action"
        else:
            pool, subject, topic = [f.object for f in world.of("presents", split)], "Medicine", "Clinical signs"
        options, gold_i = _options(rng, fact.object, pool)
        rows.append({"question": prose.medmcqa_question(fact), "exp": prose.statement(fact), "cop": gold_i + 1,
                     "opa": options[0], "opb": options[1], "opc": options[2], "opd": options[3],
                     "subject_name": subject, "topic_name": topic, "id": "%032x" % rng.getrandbits(128),
                     "choice_type": "single"})
    rng.shuffle(rows)
    return rows


def _pubmedqa_item(rng: random.Random, fact: Fact) -> dict:
    n = rng.randint(80, 900)
    contexts = [f"We studied {n} pregnant women who were given {fact.subject} in a national registry.",
                f"Outcomes were compared with {rng.randint(200, 2000)} women who were not exposed."]
    return {"QUESTION": prose.pubmedqa_question(fact), "CONTEXTS": contexts, "LABELS": ["METHODS", "RESULTS"],
            "MESHES": ["Pregnancy", fact.subject], "YEAR": str(rng.randint(1995, 2019)),
            "reasoning_required_pred": prose.PREGNANCY_ANSWER[fact.object],
            "reasoning_free_pred": prose.PREGNANCY_ANSWER[fact.object],
            "final_decision": prose.PREGNANCY_ANSWER[fact.object], "LONG_ANSWER": prose.statement(fact)}


def build_benchmarks(world: World, rng: random.Random) -> Benchmarks:
    pqal, ground_truth = {}, {}
    pmids = rng.sample(range(10_000_000, 30_000_000), len(world.of("pregnancy")))
    for pmid, fact in zip(pmids, world.of("pregnancy")):
        pqal[str(pmid)] = _pubmedqa_item(rng, fact)
        if fact.split == "heldout":
            ground_truth[str(pmid)] = pqal[str(pmid)]["final_decision"]
    return Benchmarks({
        MEDQA_TEST: _medqa(rng, world, "heldout"), MEDQA_TRAIN: _medqa(rng, world, "train"),
        MEDMCQA_TEST: _medmcqa(rng, world, "heldout"), MEDMCQA_TRAIN: _medmcqa(rng, world, "train"),
        PUBMEDQA_ALL: pqal, PUBMEDQA_TEST: ground_truth,
    })
