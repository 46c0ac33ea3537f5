"""Book cleaning on handmade PDF-extracted text: values are not a table of contents, removals leave whole
sentences, removed blocks do not merge paragraphs, and near-duplicate books go (MinHash LSH)."""
import json
import random
import sys
from pathlib import Path

import pytest

from megapmc.data.medc_k.books import BookCleanConfig, BookCleaner
from megapmc.data.medc_k.pipeline import clean_books

REPO = Path(__file__).resolve().parents[2]


def clean(text, **cfg):
    cleaner = BookCleaner(BookCleanConfig(**cfg))
    return cleaner.clean(text), cleaner.stats.removed


def test_lab_values_are_not_a_table_of_contents():
    text = ("Normal ranges used in this chapter:\n"
            "Sodium .......... 135-145 mmol/L\n"
            "Potassium ....... 3.5-5.0 mmol/L\n"
            "Platelets ........ 150\n"
            "White cells ...... 11\n"
            "Albumin .......... 35\n"
            "Heart rate 60 100\n"
            "Serum sodium   140\n"
            "Hyponatraemia is common in hospital.")
    out, removed = clean(text)
    assert out == text and removed["table_of_contents"].items == 0
    # Page numbers that never go down are a table of contents even without a heading.
    toc = "Part I  Basics   1\nPart II  Organs   17\nPart III  Therapy   90"
    assert clean(toc + "\n\nSepsis kills.")[0] == "Sepsis kills."


def test_a_removed_block_leaves_a_paragraph_break():
    text = ("Sepsis needs early antibiotics.\n"
            "Contents\n1 Sepsis ........ 1\n2 Asthma .... 45\n"
            "Asthma is a chronic inflammatory disease.\n"
            "References\n1. Singer M, Deutschman CS. Sepsis-3. JAMA. 2016;315:801-10.\n"
            "Chapter 3 begins here.")
    out, removed = clean(text)
    assert out == ("Sepsis needs early antibiotics.\n\nAsthma is a chronic inflammatory disease.\n\n"
                   "Chapter 3 begins here.")
    assert removed["table_of_contents"].items == 3 and removed["references"].items == 2


def test_urls_and_figure_references_leave_whole_sentences():
    text = ("Hyponatraemia is usually mild (Fig. 3). See Figure 2.1 for the algorithm. Treat the cause "
            "(see https://example.org/na), not the number.\n"
            "Guidance is online at https://www.nice.org.uk/ng51. Read it (www.who.int) before the round, "
            "see Table 4.\n"
            "Dr. Smith (Smith et al., 2001) agrees, (see Fig. 2). Figure 5 shows the curve [12].")
    out, removed = clean(text)
    assert out == ("Hyponatraemia is usually mild. Treat the cause, not the number.\n"
                   "Read it before the round.\n"
                   "Dr. Smith agrees. Figure 5 shows the curve.")
    assert (removed["urls"].items, removed["figure_table_refs"].items, removed["citations"].items) == (3, 4, 2)
    for broken in ("  ", " .", " ,", "()", "( ", " )", "at."):
        assert broken not in out


def test_text_without_removals_keeps_its_spacing():
    text = "Dose:  5 mg/kg ( max 500 mg ) twice daily .\nSodium .......... 135-145 mmol/L"
    assert clean(text)[0] == text


def _book(seed, words=1500):
    rng = random.Random(seed)
    vocab = [f"w{i}" for i in range(3000)]
    sentences = [" ".join(rng.choice(vocab) for _ in range(15)).capitalize() + "." for _ in range(words // 15)]
    return "\n\n".join(" ".join(sentences[i:i + 5]) for i in range(0, len(sentences), 5))


def _edition(text, changes, seed):
    """Another edition: ``changes`` words replaced."""
    rng = random.Random(seed)
    words = text.split(" ")
    for i in rng.sample(range(len(words)), changes):
        words[i] = "revised"
    return " ".join(words)


def test_near_duplicate_books_are_dropped_deterministically(tmp_path, capsys):
    a, c = _book(1), _book(2)
    books = [{"id": "a", "text": a}, {"id": "b", "text": _edition(a, 10, 0)}, {"id": "c", "text": c},
             {"id": "d", "text": _edition(c, 200, 1)}]
    path = tmp_path / "books.jsonl"
    path.write_text("".join(json.dumps(b) + "\n" for b in books))
    one, _ = clean_books(str(path), str(tmp_path / "one.jsonl"), progress=False)
    two, _ = clean_books(str(path), str(tmp_path / "two.jsonl"), progress=False, workers=2)
    kept = [json.loads(line)["id"] for line in (tmp_path / "one.jsonl").read_text().splitlines()]
    # b is a with 10 of 1,500 words changed: word 5-gram Jaccard 0.935 (MinHash estimate 0.945); d is c with
    # 200 changed: 0.318 (estimate 0.336), kept at the default 0.8, dropped at 0.25.
    assert kept == ["a", "c", "d"]
    assert one.removed["near_duplicate_documents"].items == 1 and one.removed["duplicate_documents"].items == 0
    assert (tmp_path / "one.jsonl").read_bytes() == (tmp_path / "two.jsonl").read_bytes()
    assert one.as_dict() == two.as_dict()

    sys.path.insert(0, str(REPO / "tools"))
    try:
        import clean_books as tool
    finally:
        sys.path.pop(0)
    loose = tmp_path / "loose.jsonl"
    assert tool.main(["--input", str(path), "--output", str(loose), "--near-duplicate-threshold", "0.25",
                      "--report", str(tmp_path / "r.json"), "--no-progress"]) == 0
    assert [json.loads(line)["id"] for line in loose.read_text().splitlines()] == ["a", "c"]
    assert json.loads((tmp_path / "r.json").read_text())["removed"]["near_duplicate_documents"]["items"] == 2
    assert "near_duplicate_documents" in capsys.readouterr().out
    assert tool.main(["--input", str(path), "--output", str(loose), "--near-duplicate-threshold", "0.99"]) == 1
    assert "--near-duplicate-threshold must be in (0, 0.95]" in capsys.readouterr().err
    assert len(loose.read_text().splitlines()) == 2, "a bad flag leaves the earlier output as it was"


def test_near_duplicate_rule_can_be_disabled():
    a = _book(3)
    cleaner = BookCleaner(BookCleanConfig(disabled_rules=("near_duplicate_documents",)))
    assert cleaner.clean(a) is not None and cleaner.clean(_edition(a, 5, 0)) is not None
    with pytest.raises(ValueError, match="near-duplicate-threshold"):
        BookCleanConfig(near_duplicate_threshold=0)
