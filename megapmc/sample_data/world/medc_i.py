"""MedC-I's sources about the world, from ``train`` facts only (never a held-out one).

- conversations (ChatDoctor style, ``[{"instruction", "input", "output"}]``) with an instruction pool;
- teacher rationales for the training items of MedQA, MedMCQA and PubMedQA (JSON lines ``{"id", "rationale"}``;
  they take the place of MedMCQA's ``exp`` and PubMedQA's ``LONG_ANSWER``, written by ``benchmarks``);
- UMLS Metathesaurus files in the RRF format (pipe-separated, a trailing ``|``; columns as the UMLS
  Reference Manual, section 3.3, lists them): ``MRCONSO.RRF`` names every entity, ``MRDEF.RRF`` defines
  the drugs by their training-split mechanism, ``MRREL.RRF`` holds the training-split relations.
"""
from __future__ import annotations

import random

from megapmc.sample_data.world import prose
from megapmc.sample_data.world.benchmarks import MEDMCQA_TRAIN, MEDQA_TRAIN, PUBMEDQA_ALL, PUBMEDQA_TEST, Benchmarks
from megapmc.sample_data.world.entities import World

CHAT_INSTRUCTION = "If you are a doctor, please answer the medical questions based on the patient's description."
INSTRUCTION_POOL = {CHAT_INSTRUCTION: [
    "As a doctor, answer the patient's medical question.",
    "You are a physician. Reply to the patient's question.",
    "Answer the following question from a patient as a doctor would.",
]}
# MRREL reads right to left: CUI2 <RELA> CUI1 (megapmc/sft/sources/umls.py follows the same reading).
UMLS_RELA = {"treats": "may_treat", "presents": "has_manifestation", "acts_by": "has_mechanism_of_action"}


def conversations(world: World, rng: random.Random) -> list[dict]:
    rows = []
    for fact in world.facts:
        if fact.split == "train":
            question, reply = prose.patient_question(fact)
            rows.append({"instruction": CHAT_INSTRUCTION, "input": question, "output": reply})
    rng.shuffle(rows)
    return rows


def rationales(world: World, benchmarks: Benchmarks) -> list[dict]:
    """A teacher rationale per training item of the three benchmarks: the answer, then the fact it asks
    about as a textbook states it (``prose.rationale``). The answer comes first, as in the
    conversations' replies, since the ablation scores each option's text right after ``###Rationale:``."""
    train = [f for f in world.facts if f.split == "train"]

    def fact_for(answer: str, question: str):
        return next(f for f in train if answer in (f.subject, f.object) and ({f.subject, f.object} - {answer}).pop()
                    in question)

    out = []
    for line, row in enumerate(benchmarks.files[MEDQA_TRAIN], 1):
        out.append({"id": f"medqa-{line}", "rationale": prose.rationale(fact_for(row["answer"], row["question"]),
                                                                        row["answer"], row["question"])})
    for row in benchmarks.files[MEDMCQA_TRAIN]:
        answer = row["op" + "abcd"[row["cop"] - 1]]
        out.append({"id": f"medmcqa-{row['id']}", "rationale": prose.rationale(fact_for(answer, row["question"]),
                                                                             answer, row["question"])})
    test = benchmarks.files[PUBMEDQA_TEST]
    by_drug = {f.subject: f for f in world.of("pregnancy", "train")}
    for pmid, item in benchmarks.files[PUBMEDQA_ALL].items():
        if pmid not in test:
            fact = by_drug[item["MESHES"][1]]
            out.append({"id": f"pubmedqa-{pmid}", "rationale": prose.rationale(fact, item["final_decision"],
                                                                                  item["QUESTION"])})
    return out


def _cuis(world: World) -> dict[str, str]:
    names = world.drugs + world.diseases + world.findings + world.mechanisms
    return {name: f"C{9000000 + i:07d}" for i, name in enumerate(names)}


def umls_files(world: World) -> dict[str, list[str]]:
    """``{file name: rows}`` of the three RRF files."""
    cui = _cuis(world)
    mrconso, mrdef, mrrel = [], [], []
    for i, (name, c) in enumerate(cui.items()):
        # CUI|LAT|TS|LUI|STT|SUI|ISPREF|AUI|SAUI|SCUI|SDUI|SAB|TTY|CODE|STR|SRL|SUPPRESS|CVF|
        mrconso.append(f"{c}|ENG|P|L{i:07d}|PF|S{i:07d}|Y|A{i:07d}||||MSH|MH|D{i:06d}|{name}|0|N||")
    for fact in world.of("acts_by", "train"):
        # CUI|AUI|ATUI|SATUI|SAB|DEF|SUPPRESS|CVF|
        i = list(cui).index(fact.subject)
        mrdef.append(f"{cui[fact.subject]}|A{i:07d}|AT{i:07d}||MSH|A drug that acts by {fact.object}.|N||")
    for n, fact in enumerate(f for f in world.facts if f.split == "train" and f.relation in UMLS_RELA):
        # CUI1|AUI1|STYPE1|REL|CUI2|AUI2|STYPE2|RELA|RUI|SRUI|SAB|SL|RG|DIR|SUPPRESS|CVF|: "CUI2 RELA CUI1"
        obj, subj = cui[fact.object], cui[fact.subject]
        mrrel.append(f"{obj}||SCUI|RO|{subj}||SCUI|{UMLS_RELA[fact.relation]}|R{n:07d}||MED-RT|MED-RT|||N||")
    return {"MRCONSO.RRF": mrconso, "MRDEF.RRF": mrdef, "MRREL.RRF": mrrel}
