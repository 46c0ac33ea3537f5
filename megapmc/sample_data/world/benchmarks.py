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

from megapmc.evaluation.contamination import normalise_words
from megapmc.sample_data.world import prose
from megapmc.sample_data.world.entities import Fact, World

LETTERS = ("A", "B", "C", "D")
NGRAM = 13  # tools/check_contamination.py's default
MEDQA_TEST = "medqa/US/4_options/phrases_no_exclude_test.jsonl"
MEDQA_TRAIN = "medqa/US/4_options/phrases_no_exclude_train.jsonl"
MEDMCQA_TEST, MEDMCQA_TRAIN = "medmcqa/dev.json", "medmcqa/train.json"
PUBMEDQA_ALL, PUBMEDQA_TEST = "pubmedqa/ori_pqal.json", "pubmedqa/test_ground_truth.json"


@dataclass
class Benchmarks:
    """Every file's content, by its path under the benchmark directory (JSON-lines files as lists)."""

    files: dict[str, list[dict] | dict]


def _option_ngrams(options: list[str]) -> set[tuple[str, ...]]:
    """The 13-grams the contamination check takes from an item's option list (its ``item_fields``)."""
    words = normalise_words(" ".join(f"{letter} {text}" for letter, text in zip(LETTERS, options)))
    return {tuple(words[i:i + NGRAM]) for i in range(len(words) - NGRAM + 1)}


def _options(rng: random.Random, gold: str, pool: list[str], taken: set, split: str) -> tuple[list[str], int]:
    """Gold plus three distractors in a random order. ``taken`` collects the option lists' 13-grams of
    the training items, which a test item's list avoids: long mechanism names from a small pool would
    otherwise repeat a 13-gram of the instruction data by chance."""
    for _ in range(1000):
        options = [gold, *rng.sample([p for p in pool if p != gold], 3)]
        rng.shuffle(options)
        if split == "train" or not _option_ngrams(options) & taken:
            break
    else:
        raise ValueError("no option order avoids the training items' 13-grams; use a larger world")
    if split == "train":
        taken |= _option_ngrams(options)
    return options, options.index(gold)


def _vignette(rng: random.Random) -> str:
    return f"A {rng.randint(18, 80)}-year-old {rng.choice(['man', 'woman'])}"


def _medqa(rng: random.Random, world: World, split: str, taken: set) -> list[dict]:
    rows = []
    for fact in world.of("treats", split) + world.of("presents", split)[0::2]:
        reverse = fact.relation == "presents"  # asks for the disease from its finding
        gold = fact.subject  # the drug, or the disease
        pool = [f.subject for f in world.of(fact.relation, split)]
        options, gold_i = _options(rng, gold, pool, taken, split)
        question = prose.medqa_question(fact, _vignette(rng), reverse)
        rows.append({"question": question, "answer": gold, "options": dict(zip(LETTERS, options)),
                     "meta_info": "step1", "answer_idx": LETTERS[gold_i],
                     "metamap_phrases": [fact.object, "treatment of choice" if not reverse else "diagnosis"]})
    rng.shuffle(rows)
    return rows


def _medmcqa(rng: random.Random, world: World, split: str, taken: set) -> list[dict]:
    rows = []
    for fact in world.of("acts_by", split) + world.of("presents", split)[1::2]:
        if fact.relation == "acts_by":
            pool, subject, topic = world.mechanisms, "Pharmacology", "Mechanism of action"
        else:
            pool, subject, topic = [f.object for f in world.of("presents", split)], "Medicine", "Clinical signs"
        options, gold_i = _options(rng, fact.object, pool, taken, split)
        rows.append({"question": prose.medmcqa_question(fact), "exp": prose.statement(fact), "cop": gold_i + 1,
                     "opa": options[0], "opb": options[1], "opc": options[2], "opd": options[3],
                     "subject_name": subject, "topic_name": topic, "id": "%032x" % rng.getrandbits(128),
                     "choice_type": "single"})
    rng.shuffle(rows)
    return rows


def _pubmedqa_item(rng: random.Random, fact: Fact) -> dict:
    # The abstract without its conclusion, as PubMedQA's contexts are; its first sentence opens the
    # paper's body in the corpus (corpora.papers), whose conclusion is the answer.
    contexts = [prose.pregnancy_methods(fact)]
    return {"QUESTION": prose.pubmedqa_question(fact), "CONTEXTS": contexts, "LABELS": ["METHODS"],
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
    medqa_pairs, medmcqa_pairs = set(), set()  # training items first: test items avoid their 13-grams
    medqa_train, medmcqa_train = _medqa(rng, world, "train", medqa_pairs), _medmcqa(rng, world, "train", medmcqa_pairs)
    return Benchmarks({
        MEDQA_TEST: _medqa(rng, world, "heldout", medqa_pairs), MEDQA_TRAIN: medqa_train,
        MEDMCQA_TEST: _medmcqa(rng, world, "heldout", medmcqa_pairs), MEDMCQA_TRAIN: medmcqa_train,
        PUBMEDQA_ALL: pqal, PUBMEDQA_TEST: ground_truth,
    })
