"""Generate the embedded pretraining samples in ``sample_data/pretrain/`` (deterministic; run once, committed).

    python megapmc/sample_data/make_pretrain_samples.py

Writes, all text written for this project:
* ``books.jsonl``: raw "PDF-extracted" medical books, with what tools/clean_books.py removes (title-page
  author lines, a table of contents, running page headers and page numbers between form feeds, URLs,
  citation markers like [12], figure/table references like "Fig. 5.1", captions, reference sections,
  a duplicated paragraph, and one book twice);
* ``s2orc_sample.jsonl``: S2ORC-like paper records, some with and some without a PubMed Central id,
  plus one malformed line;
* ``papers.jsonl``: the output of tools/filter_s2orc.py on ``s2orc_sample.jsonl``;
* ``general.jsonl``: general-domain text (the RedPajama share of the mixture).
"""
from __future__ import annotations

import json
import random
import textwrap
from pathlib import Path

OUT = Path(__file__).resolve().parent / "pretrain"

TOPICS = {
    "Sepsis": ["sepsis", "septic shock", "lactate", "blood cultures", "broad-spectrum antibiotics", "vasopressors"],
    "Heart Failure": ["heart failure", "ejection fraction", "loop diuretics", "beta blockers", "natriuretic peptide",
                      "pulmonary congestion"],
    "Diabetes Mellitus": ["type 2 diabetes", "insulin resistance", "metformin", "glycated haemoglobin",
                          "hypoglycaemia", "diabetic nephropathy"],
    "Asthma": ["asthma", "airway inflammation", "inhaled corticosteroids", "bronchodilators", "peak expiratory flow",
               "eosinophils"],
    "Chronic Kidney Disease": ["chronic kidney disease", "glomerular filtration rate", "proteinuria",
                               "ACE inhibitors", "renal anaemia", "dialysis"],
    "Pneumonia": ["community-acquired pneumonia", "chest radiograph", "Streptococcus pneumoniae", "oxygen saturation",
                  "macrolides", "respiratory rate"],
    "Atrial Fibrillation": ["atrial fibrillation", "anticoagulation", "stroke risk", "rate control",
                            "the CHA2DS2-VASc score", "palpitations"],
    "Hypertension": ["hypertension", "systolic blood pressure", "thiazide diuretics", "calcium channel blockers",
                     "left ventricular hypertrophy", "salt intake"],
}
PATTERNS = [
    "{a} is closely associated with {b} in adults admitted to hospital.",
    "In most patients, {a} responds to early treatment with {b}.",
    "The assessment of {a} should include a careful measurement of {b}.",
    "Randomised trials have shown that {b} reduces mortality in {a}.",
    "Clinicians should consider {b} when {a} does not improve within 48 hours.",
    "Elderly patients with {a} often present atypically, and {b} may be the only early sign.",
    "Guidelines recommend that {b} is reviewed at every visit for {a}.",
    "The pathophysiology of {a} involves changes in {b} that develop over months.",
    "A normal value of {b} does not exclude {a}.",
    "Monitoring {b} helps to judge the response to therapy in {a}.",
]
GENERAL = [
    "The river runs through the old town before it reaches the sea.",
    "Bread dough should rest for an hour in a warm kitchen.",
    "The committee published its annual report on public transport.",
    "Many birds migrate south when the days grow shorter.",
    "The library extended its opening hours during the examination period.",
    "A good map shows both the roads and the height of the land.",
    "The orchestra rehearsed the symphony twice before the concert.",
    "Solar panels convert sunlight into electricity for the village school.",
    "The museum displays tools that farmers used two centuries ago.",
    "Regular practice is the surest way to learn a new language.",
    "The bridge was closed for repairs after the winter storms.",
    "Engineers tested the new engine in cold and hot weather.",
]
AUTHORS = ["Jane Smith", "Robert Lee", "Amira Haddad", "Kenji Sato", "Olga Petrova", "Tomas Novak", "Grace Okafor"]
JOURNALS = ["N Engl J Med", "Lancet", "BMJ", "JAMA", "Crit Care Med", "Eur Heart J", "Diabetes Care"]


def sentence(rng: random.Random, topic: str) -> str:
    a, b = rng.sample(TOPICS[topic], 2)
    s = rng.choice(PATTERNS).format(a=a, b=b)
    return s[0].upper() + s[1:]


def paragraph(rng: random.Random, topic: str, n: int) -> str:
    return " ".join(sentence(rng, topic) for _ in range(n))


def decorate(rng: random.Random, para: str, chapter: int, figures: list[str]) -> str:
    """Add citation markers, figure/table references and URLs, as book text has them."""
    sents = [s.rstrip(".") for s in para.split(". ")]
    for i in range(len(sents)):
        r = rng.random()
        if r < 0.25:
            sents[i] += f" [{rng.randint(1, 40)}]"
        elif r < 0.32:
            sents[i] += f" [{rng.randint(1, 20)}, {rng.randint(21, 40)}]"
        elif r < 0.40:
            fig = f"{chapter}.{rng.randint(1, 4)}"
            figures.append(fig)
            sents[i] += f" (Fig. {fig})"
        elif r < 0.45:
            sents[i] += f" (see Table {rng.randint(1, 5)})"
        elif r < 0.48:
            sents[i] += f" (available at https://www.example-guidelines.org/ch{chapter}/{rng.randint(1, 99)})"
    return ". ".join(sents) + "."


def wrap(text: str) -> list[str]:
    return textwrap.wrap(text, width=88, break_on_hyphens=False, break_long_words=False)


def make_book(rng: random.Random, index: int) -> dict:
    topics = rng.sample(sorted(TOPICS), 4)
    title = f"Essentials of Clinical Medicine, Volume {index + 1}"
    authors = rng.sample(AUTHORS, 2)
    front = [title.upper(), "", f"By {authors[0]}, MD, PhD and {authors[1]}, MD", "", "Contents", ""]
    body: list[list[str]] = []  # lines per page
    page_no, toc = 1, []
    duplicate = None
    for c, topic in enumerate(topics, start=1):
        toc.append(f"Chapter {c} {topic} {'.' * rng.randint(5, 20)} {page_no}")
        lines = [f"Chapter {c}", topic, ""]
        figures: list[str] = []
        for p in range(rng.randint(5, 8)):
            para = decorate(rng, paragraph(rng, topic, rng.randint(3, 6)), c, figures)
            if duplicate is None and p == 2:
                duplicate = para
            lines += wrap(para) + [""]
            if p == 3:
                lines += [f"Fig. {c}.1 Typical findings in {topic.lower()} on admission.", ""]
        if c == 2:
            lines += wrap(duplicate) + [""]  # the same paragraph twice, as extraction produces
        lines += ["References", ""]
        for r in range(1, rng.randint(4, 7)):
            a = rng.choice(AUTHORS).split()
            lines.append(f"{r}. {a[1]} {a[0][0]}, {rng.choice(AUTHORS).split()[1]} A. {topic} in adults. "
                         f"{rng.choice(JOURNALS)}. {rng.randint(1985, 2022)};{rng.randint(10, 400)}:{rng.randint(1, 999)}-"
                         f"{rng.randint(1000, 1999)}.")
        lines.append("")
        # Paginate: about 30 lines per page.
        for i in range(0, len(lines), 30):
            body.append(lines[i:i + 30])
            page_no += 1
    front += toc + [""]
    pages = [front]
    for n, page in enumerate(body, start=2):
        header = f"{title}   {n}" if n % 2 == 0 else f"Chapter {min(len(topics), 1 + (n - 2) * len(topics) // len(body))}"
        pages.append([header, ""] + page + ["", str(n)])
    text = "\f".join("\n".join(p) for p in pages)
    return {"id": f"book-{index:02d}", "title": title, "text": text}


def make_s2orc(rng: random.Random, index: int) -> dict:
    topic = rng.choice(sorted(TOPICS))
    body = []
    for section in ("Introduction", "Methods", "Results", "Discussion"):
        for _ in range(rng.randint(1, 3)):
            body.append({"text": paragraph(rng, topic, rng.randint(3, 5)), "section": section,
                         "cite_spans": [], "ref_spans": []})
    record = {
        "paper_id": str(10_000_000 + index),
        "title": f"{rng.choice(['Outcomes', 'Predictors', 'Management', 'Trends'])} of {topic.lower()}: "
                 f"a {rng.choice(['cohort', 'randomised', 'registry'])} study of {rng.randint(80, 9000)} patients",
        "abstract": [{"text": paragraph(rng, topic, 3), "section": "Abstract"}],
        "body_text": body,
        "pmc_id": f"PMC{rng.randint(1_000_000, 9_999_999)}" if index % 3 != 2 else None,
        "pubmed_id": str(rng.randint(10_000_000, 39_999_999)),
    }
    if index % 7 == 3:  # the nested layout (metadata + pdf_parse) appears in some dumps
        record = {"paper_id": record["paper_id"],
                  "metadata": {"title": record["title"], "pmc_id": record["pmc_id"]},
                  "pdf_parse": {"abstract": record["abstract"], "body_text": record["body_text"]}}
    return record


def make_general(rng: random.Random, index: int) -> dict:
    return {"id": f"general-{index:03d}",
            "text": "\n\n".join(" ".join(rng.sample(GENERAL, rng.randint(3, 6))) for _ in range(rng.randint(2, 5)))}


def write_jsonl(path: Path, records, extra_lines=()) -> None:
    with open(path, "w", encoding="utf-8") as f:
        for r in records:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
        for line in extra_lines:
            f.write(line + "\n")


def main() -> None:
    from megapmc.data.medc_k.pipeline import filter_s2orc

    rng = random.Random(20230825)
    OUT.mkdir(parents=True, exist_ok=True)
    books = [make_book(rng, i) for i in range(6)]
    books.append(dict(books[1], id="book-06"))  # the same book scanned twice
    write_jsonl(OUT / "books.jsonl", books)
    write_jsonl(OUT / "s2orc_sample.jsonl", [make_s2orc(rng, i) for i in range(45)], extra_lines=['{"paper_id": '])
    filter_s2orc(str(OUT / "s2orc_sample.jsonl"), str(OUT / "papers.jsonl"), progress=False)
    write_jsonl(OUT / "general.jsonl", [make_general(rng, i) for i in range(60)])
    for p in sorted(OUT.glob("*.jsonl")):
        print(f"{p.name}: {p.stat().st_size:,} bytes")


if __name__ == "__main__":
    main()
