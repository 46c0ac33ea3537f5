"""The world's entities and facts, and which split and which corpus each fact belongs to.

Entities are made-up names (no real drug or disease can leak knowledge from anywhere): drugs, diseases,
findings and mechanisms. Facts are four relations:

- ``treats``     drug → disease      one drug per disease, one disease per drug
- ``presents``   disease → finding   one finding per disease
- ``acts_by``    drug → mechanism    a mechanism is shared by ``DRUGS_PER_MECHANISM`` drugs
- ``pregnancy``  drug → safe | unsafe | uncertain (PubMedQA's yes / no / maybe)

Each fact gets, independently and seeded:

- a **split**: ``train`` (instruction data may state it) or ``heldout`` (only benchmark items ask
  about it, and no instruction record states it);
- a **coverage**: ``books``, ``papers`` or ``both`` — which pretraining corpora state it. Every fact is
  in at least one corpus, so knowledge injection can learn all held-out facts, while the papers-only
  ablation sees only the papers' share.
"""
from __future__ import annotations

import random
from dataclasses import asdict, dataclass, field

RELATIONS = ("treats", "presents", "acts_by", "pregnancy")
PREGNANCY_VALUES = ("safe", "unsafe", "uncertain")
DRUGS_PER_MECHANISM = 3
COVERAGE_SHARES = {"books": 0.5, "both": 0.3, "papers": 0.2}  # books state 80% of facts, papers 50%
HELDOUT_SHARE = 0.6

# Syllables that read as pharmacology without being a real name.
_DRUG_STEMS = ["val", "tor", "cef", "mox", "lin", "dar", "pex", "sul", "bren", "quin", "zol", "fen", "tar",
               "nor", "cal", "vex", "pra", "dol", "mir", "sat", "ker", "lom", "rib", "hal", "gen", "pol"]
_DRUG_ENDS = ["azole", "amine", "pril", "olol", "cillin", "mab", "statin", "oxacin", "tide", "vir", "afil",
              "ulin", "odine", "etam"]
_DISEASE_STEMS = ["harl", "brenn", "quex", "morv", "tals", "orb", "kest", "vinn", "dral", "selm", "yarr",
                  "fent", "gorl", "pell", "zand", "cros", "lupp", "nerr", "wilk", "hask"]
_DISEASE_FORMS = ["{} syndrome", "{}itis", "{}osis", "{} disease", "{} fever", "{}emia"]
_FINDING_QUALITIES = ["violet", "nocturnal", "migratory", "painless", "bilateral", "silver", "pulsing",
                      "cyclic", "waxy", "amber", "granular", "radiating"]
_FINDING_SITES = ["palmar", "ankle", "jaw", "scalp", "retinal", "tongue", "flank", "knuckle", "eyelid",
                  "shin", "neck", "lumbar"]
_FINDING_SIGNS = ["rash", "tremor", "nodules", "plaques", "swelling", "pallor", "spasm", "streaks"]
_MECH_ACTIONS = ["inhibition of", "blockade of", "activation of"]
_MECH_TARGETS = ["tarsine kinase", "the velox receptor", "morlin synthase", "the kappa-pex channel",
                 "drovase", "the lumin transporter", "quellin oxidase", "the serak pump",
                 "fibrase", "the ostal receptor", "cendrin reductase", "the bromo gate"]


@dataclass(frozen=True)
class Fact:
    relation: str  # one of RELATIONS
    subject: str  # drug (treats, acts_by, pregnancy) or disease (presents)
    object: str  # disease, finding, mechanism, or a PREGNANCY_VALUES value
    split: str  # "train" or "heldout"
    coverage: str  # "books", "papers" or "both"

    @property
    def in_books(self) -> bool:
        return self.coverage in ("books", "both")

    @property
    def in_papers(self) -> bool:
        return self.coverage in ("papers", "both")


@dataclass
class World:
    seed: int
    drugs: list[str]
    diseases: list[str]
    findings: list[str]
    mechanisms: list[str]
    facts: list[Fact] = field(default_factory=list)

    def of(self, relation: str, split: str | None = None) -> list[Fact]:
        return [f for f in self.facts if f.relation == relation and (split is None or f.split == split)]

    def to_json(self) -> dict:
        return {"seed": self.seed, "drugs": self.drugs, "diseases": self.diseases, "findings": self.findings,
                "mechanisms": self.mechanisms, "facts": [asdict(f) for f in self.facts]}


def _unique_names(rng: random.Random, n: int, make) -> list[str]:
    names: list[str] = []
    seen: set[str] = set()
    while len(names) < n:
        name = make(rng)
        if name not in seen:
            seen.add(name)
            names.append(name)
    return names


def _drug(rng: random.Random) -> str:
    return rng.choice(_DRUG_STEMS) + rng.choice("aeiou") + rng.choice(_DRUG_STEMS[:12]) + rng.choice(_DRUG_ENDS)


def _disease(rng: random.Random) -> str:
    form = rng.choice(_DISEASE_FORMS)
    stem = rng.choice(_DISEASE_STEMS) + rng.choice(["", "a", "o", "en"])
    return form.format(stem.capitalize() if " " in form else stem).capitalize()


def _finding(rng: random.Random) -> str:
    return " ".join((rng.choice(_FINDING_QUALITIES), rng.choice(_FINDING_SITES), rng.choice(_FINDING_SIGNS)))


def _assign(rng: random.Random, relation: str, subject: str, obj: str) -> Fact:
    split = "heldout" if rng.random() < HELDOUT_SHARE else "train"
    r, coverage = rng.random(), "books"
    for name, share in COVERAGE_SHARES.items():
        if r < share:
            coverage = name
            break
        r -= share
    return Fact(relation, subject, obj, split, coverage)


def generate_world(seed: int = 1234, num_diseases: int = 72) -> World:
    """A world of ``num_diseases`` diseases, as many drugs and findings, and a mechanism per
    ``DRUGS_PER_MECHANISM`` drugs; every relation's facts split and covered as the module describes."""
    if num_diseases < 12 or num_diseases % DRUGS_PER_MECHANISM:
        raise ValueError(f"num_diseases must be >= 12 and a multiple of {DRUGS_PER_MECHANISM}, got {num_diseases}")
    n_mech = num_diseases // DRUGS_PER_MECHANISM
    if n_mech > len(_MECH_ACTIONS) * len(_MECH_TARGETS):
        raise ValueError(f"num_diseases {num_diseases} needs more mechanism names than the generator has")
    rng = random.Random(seed)
    world = World(
        seed=seed,
        drugs=_unique_names(rng, num_diseases, _drug),
        diseases=_unique_names(rng, num_diseases, _disease),
        findings=_unique_names(rng, num_diseases, _finding),
        mechanisms=rng.sample([f"{a} {t}" for a in _MECH_ACTIONS for t in _MECH_TARGETS], n_mech),
    )
    mech_of = [world.mechanisms[i % n_mech] for i in range(num_diseases)]
    rng.shuffle(mech_of)
    pregnancy = [PREGNANCY_VALUES[i % 3] for i in range(num_diseases)]
    rng.shuffle(pregnancy)
    for i, (drug, disease, finding) in enumerate(zip(world.drugs, world.diseases, world.findings)):
        world.facts += [
            _assign(rng, "treats", drug, disease),
            _assign(rng, "presents", disease, finding),
            _assign(rng, "acts_by", drug, mech_of[i]),
            _assign(rng, "pregnancy", drug, pregnancy[i]),
        ]
    return world
