"""The pretraining corpora of the world: books, papers and general text (one JSON object per document).

- **Books**: a chapter per disease, stating every fact about the disease and its drug that the books
  cover, each in all its textbook paraphrases, mixed with sentences that carry no fact.
- **Papers**: an article per drug, stating the facts the papers cover in paper phrasings, and a
  "safe in pregnancy?" article whose title asks the question its conclusion answers (PubMedQA's source
  kind). Papers are repeated ``PAPER_COPIES`` times in different sentence orders (as the literature
  repeats a finding), so that papers-only facts are seen about as often as books' under 15:4:1.
- **General text**: everyday prose with no medical word; a second, disjoint draw is held out for the
  forgetting check (perplexity), never trained on.
- **Prompt wording** (for the tokenizer only, never trained on): the instruction template and the
  instructions MedC-I and the evaluation use. LLaMA's tokenizer learnt such English from the web; a
  tokenizer trained on the corpora alone splits it into letters and bytes, which doubled the length of
  every instruction sample (half of them no longer fitted in the sequence, their answers cut off).
"""
from __future__ import annotations

import random

from megapmc.sample_data.world import medc_i, prose
from megapmc.sample_data.world.entities import World
from megapmc.sft import template
from megapmc.sft.sources.umls import DEFINITION_INSTRUCTIONS, RELATION_INSTRUCTIONS

PAPER_COPIES = 2
# Copies of each prompt line: as frequent as the corpora's own frequent words, so its words become pieces.
PROMPT_COPIES = 30
_BOOK_FILLER = ["This chapter reviews the condition in detail.", "The condition is seen in clinics worldwide.",
                "Careful history and examination remain essential.", "Follow-up visits should be planned early.",
                "Management should be reviewed at every visit."]
_PAPER_FILLER = ["We enrolled adults at three centres.", "Data were collected over two years.",
                 "Outcomes were assessed by blinded reviewers.", "Further trials are needed."]

_GENERAL = {
    "subject": ["The farmer", "A teacher", "The old sailor", "My neighbour", "The baker", "A young student",
                "The mayor", "Our guide", "The painter", "A tired driver", "The children", "The engineer"],
    "verb": ["carried", "painted", "repaired", "sold", "found", "cleaned", "built", "watched", "bought",
             "described", "opened", "moved"],
    "object": ["the wooden boat", "a basket of apples", "the broken window", "an old map", "the red bicycle",
               "a heavy box", "the garden gate", "a small lamp", "the kitchen table", "a long letter"],
    "place": ["near the river", "in the market", "behind the school", "at the harbour", "on the hill",
              "in the village square", "by the station", "under the bridge", "in the library"],
    "time": ["early in the morning", "after lunch", "before the storm", "on Sunday", "late at night",
             "in the spring", "during the festival"],
}


def _shuffled(rng: random.Random, items: list[str]) -> list[str]:
    items = list(items)
    rng.shuffle(items)
    return items


def books(world: World, rng: random.Random) -> list[dict]:
    treats = {f.object: f for f in world.of("treats")}  # disease → its treats fact
    by_drug = {}
    for f in world.facts:
        if f.relation in ("acts_by", "pregnancy"):
            by_drug.setdefault(f.subject, []).append(f)
    presents = {f.subject: f for f in world.of("presents")}
    docs = []
    for i, disease in enumerate(world.diseases):
        drug = treats[disease].subject
        facts = [treats[disease], presents[disease], *by_drug[drug]]
        sentences = [s for f in facts if f.in_books for s in prose.book_sentences(f)]
        sentences += rng.sample(_BOOK_FILLER, 2)
        body = " ".join(_shuffled(rng, sentences))
        docs.append({"id": f"book-ch{i:03d}", "title": f"Chapter {i + 1}: {disease}",
                     "text": f"Chapter {i + 1}: {disease}\n\n{body}"})
    return docs


def papers(world: World, rng: random.Random) -> list[dict]:
    docs = []
    for copy in range(PAPER_COPIES):
        for i, drug in enumerate(world.drugs):
            facts = [f for f in world.facts if f.in_papers and f.relation != "pregnancy"
                     and drug in (f.subject, f.object)]
            treated = [f.object for f in world.of("treats") if f.subject == drug]
            facts += [f for f in world.of("presents") if f.in_papers and f.subject in treated]
            if facts:
                sentences = [s for f in facts for s in prose.paper_sentences(f)] + rng.sample(_PAPER_FILLER, 2)
                docs.append({"id": f"paper-{i:03d}-{copy}", "title": f"Clinical experience with {drug}",
                             "text": " ".join(_shuffled(rng, sentences))})
        for f in world.of("pregnancy"):
            if f.in_papers:
                title = prose.pubmedqa_question(f)
                body = [prose.pregnancy_methods(f), *prose.paper_sentences(f)]
                docs.append({"id": f"paper-preg-{world.drugs.index(f.subject):03d}-{copy}", "title": title,
                             "text": f"{title} " + " ".join(body)})
    rng.shuffle(docs)
    return docs


def general_text(rng: random.Random, num_docs: int, prefix: str) -> list[dict]:
    docs = []
    for i in range(num_docs):
        sentences = []
        for _ in range(rng.randint(5, 9)):
            g = {k: rng.choice(v) for k, v in _GENERAL.items()}
            form = rng.randrange(3)
            if form == 0:
                sentences.append(f"{g['subject']} {g['verb']} {g['object']} {g['place']}.")
            elif form == 1:
                sentences.append(f"{g['time'].capitalize()}, {g['subject'].lower()} {g['verb']} {g['object']}.")
            else:
                sentences.append(f"{g['subject']} {g['verb']} {g['object']} {g['time']}.")
        docs.append({"id": f"{prefix}-{i:04d}", "text": " ".join(sentences)})
    return docs


def prompt_text() -> list[dict]:
    """The fixed wording of every instruction prompt (no entity, no fact), ``PROMPT_COPIES`` times."""
    instructions = [template.MCQ_INSTRUCTION, template.MCQ_RATIONALE_INSTRUCTION, template.PUBMEDQA_INSTRUCTION,
                    template.PUBMEDQA_LONG_ANSWER_INSTRUCTION, *DEFINITION_INSTRUCTIONS, *RELATION_INSTRUCTIONS,
                    *(i for key, pool in medc_i.INSTRUCTION_POOL.items() for i in (key, *pool))]
    frame = "###Context: We\n###Question: Is\n###Options:\nA. yes\n###Rationale: The\n###Answer: OPTION A IS CORRECT."
    lines = [template.build_prompt(i, frame) for i in instructions] + [template.build_prompt(i) for i in instructions]
    return [{"id": f"prompt-{n:04d}", "text": text} for n, text in enumerate(lines * PROMPT_COPIES)]
