"""MedC-K corpus tools: book cleaning rules on handmade text, S2ORC → PMC filter, the embedded samples."""
import json
import re
import sys
from pathlib import Path

import pytest

from megapmc.data.medc_k.books import RULES, BookCleanConfig, BookCleaner
from megapmc.data.medc_k.pipeline import clean_books, filter_s2orc
from megapmc.data.medc_k.s2orc import S2orcFilterStats, convert_paper, paper_text, pmc_id

REPO = Path(__file__).resolve().parents[2]
SAMPLES = REPO / "megapmc" / "sample_data" / "pretrain"


def clean(text, **cfg):
    cleaner = BookCleaner(BookCleanConfig(**cfg))
    return cleaner.clean(text), cleaner.stats.removed


# ---- one rule at a time ------------------------------------------------------------------------


def test_urls():
    out, removed = clean("Guidance is online at https://www.nice.org.uk/ng51. Read it (see www.who.int/sepsis) "
                         "before the ward round.\n\nSee also <http://example.org/a?b=1>, which is older.")
    # A sentence that uses a bare URL goes whole (else "Guidance is online at."); an aside goes alone.
    assert out == "Read it before the ward round."
    assert removed["urls"].items == 3


def test_citation_markers():
    out, removed = clean("Lactate predicts mortality [12]. Fluids help [3, 4] and early antibiotics too [5–7]. "
                         "Steroids are debated (Smith et al., 2001; Jones and Brown, 1999). A [sic] note stays.")
    assert out == ("Lactate predicts mortality. Fluids help and early antibiotics too. Steroids are debated. "
                   "A [sic] note stays.")
    assert removed["citations"].items == 4


def test_figure_and_table_references_and_captions():
    text = ("Crackles are heard at the bases (Fig. 5.1). Doses are listed (see Table 3) and in Tables 4 and 5. "
            "Figure 2 shows the curve.\n\n"
            "Fig. 5.1 Chest radiograph showing bilateral infiltrates.\n\n"
            "Table 3: Antibiotic doses in renal failure\n\n"
            "Table salt raises blood pressure in 3 of 4 adults.")
    out, removed = clean(text)
    # Asides go; references that are part of a sentence stay (removing them would break it).
    assert out == ("Crackles are heard at the bases. Doses are listed and in Tables 4 and 5. Figure 2 shows the "
                   "curve.\n\nTable salt raises blood pressure in 3 of 4 adults.")
    assert removed["captions"].items == 2
    assert removed["figure_table_refs"].items == 2


def test_author_lines_but_not_sentences():
    text = ("HANDBOOK OF NEPHROLOGY\n\nBy Jane Smith, MD, PhD and Robert Lee, MD\nEdited by Amira Haddad\n"
            "Kenji Sato, MBBS, FRCP\n\nBy contrast, beta blockers reduce mortality in Smith's cohort.\n"
            "Patients treated by the renal team, MD or not, recovered.")
    out, removed = clean(text)
    assert out == ("HANDBOOK OF NEPHROLOGY\n\nBy contrast, beta blockers reduce mortality in Smith's cohort.\n"
                   "Patients treated by the renal team, MD or not, recovered.")
    assert removed["author_lines"].items == 3


def test_table_of_contents():
    text = ("Contents\n\nPreface .......... vii\n1 Sepsis ........ 1\n1.1 Definitions 3\n2 Asthma .... 45\n\n"
            "Chapter 1\nSepsis is a dysregulated response to infection.\n\n"
            "Part I  Basics   1\nPart II  Organs   17\nPart III  Therapy   90\n\n"
            "The trial enrolled patients aged 18 to 65.\nMortality at day 28 was 12.")
    out, removed = clean(text)
    assert out == ("Chapter 1\nSepsis is a dysregulated response to infection.\n\n"
                   "The trial enrolled patients aged 18 to 65.\nMortality at day 28 was 12.")
    assert removed["table_of_contents"].items == 8


def test_reference_sections_end_at_the_next_chapter():
    text = ("Sepsis needs early antibiotics. In 2016 the definition changed.\n\nReferences\n\n"
            "1. Singer M, Deutschman CS. The third international consensus definitions. JAMA. 2016;315:801-10.\n"
            "2. Rhodes A, et al. Surviving sepsis campaign. Intensive Care Med.\n   2017;43:304-77.\n"
            "Seymour CW, Liu VX. Assessment of clinical criteria for sepsis. JAMA 2016; 315: 762.\n\n"
            "Chapter 2\nAsthma is a chronic inflammatory disease of the airways.\n\n"
            "Further Reading\nBarnes PJ. Asthma mechanisms. Lancet 2008;372:1107.")
    out, removed = clean(text)
    assert out == ("Sepsis needs early antibiotics. In 2016 the definition changed.\n\n"
                   "Chapter 2\nAsthma is a chronic inflammatory disease of the airways.")
    assert removed["references"].items == 7  # 2 headings + 5 entry lines


def test_page_headers_footers_and_numbers():
    words = ["alpha", "beta", "gamma", "delta", "epsilon"]
    pages = []
    for n, w in enumerate(words, start=1):
        body = f"Paragraph {w} ends here.\n\nA sentence on {w} runs over the page" if n < 5 else "Last page."
        start = f"that the {words[n - 2]} sentence continues here. " if n > 1 else ""
        pages.append(f"Textbook of Medicine   {n + 10}\n\n{start}{body}\n\n{n + 10}")
    out, removed = clean("\f".join(pages))
    assert "Textbook of Medicine" not in out
    assert not re.search(r"^\d+$", out, re.M)
    # A paragraph broken by the page break is joined again.
    assert "A sentence on beta runs over the page\nthat the beta sentence continues here." in out
    assert removed["page_headers"].items == 10


def test_headers_need_enough_repeats():
    text = "\f".join(f"Rare header {i}\n\nBody text {w} is long enough to be prose." for i, w in enumerate("ab"))
    out, _ = clean(text)
    assert "Rare header 0" in out and "Rare header 1" in out


def test_duplicate_paragraphs_and_documents():
    cleaner = BookCleaner()
    book = "Intro paragraph.\n\nRepeated   paragraph text.\n\nMiddle.\n\nRepeated paragraph\ntext."
    assert cleaner.clean(book) == "Intro paragraph.\n\nRepeated   paragraph text.\n\nMiddle."
    assert cleaner.clean(book) is None, "the same book again is dropped"
    assert cleaner.clean("Another book.") == "Another book."
    assert cleaner.stats.removed["duplicate_paragraphs"].items == 2
    assert cleaner.stats.removed["duplicate_documents"].items == 1
    assert (cleaner.stats.documents_in, cleaner.stats.documents_out) == (3, 2)


def test_rules_can_be_disabled():
    out, removed = clean("Fever [1] (Fig. 2) https://x.org", disabled_rules=("citations", "urls"))
    assert out == "Fever [1] https://x.org" and removed["citations"].items == 0
    with pytest.raises(ValueError, match="unknown cleaning rule"):
        BookCleanConfig(disabled_rules=("typos",))


# ---- the embedded sample books -----------------------------------------------------------------


def test_clean_books_tool_on_samples(tmp_path, capsys):
    sys.path.insert(0, str(REPO / "tools"))
    try:
        import clean_books as tool
    finally:
        sys.path.pop(0)
    out = tmp_path / "books.jsonl.zst"
    assert tool.main(["--input", str(SAMPLES / "books.jsonl"), "--output", str(out), "--report",
                      str(tmp_path / "r.json"), "--no-progress"]) == 0
    report = json.loads((tmp_path / "r.json").read_text())
    assert all(report["removed"][r]["items"] > 0 for r in RULES if r != "near_duplicate_documents"), report["removed"]
    assert report["removed"]["near_duplicate_documents"]["items"] == 0  # the copy is exact, caught first
    assert report["documents_in"] == 7 and report["documents_out"] == 6
    printed = capsys.readouterr().out
    assert all(r in printed for r in RULES)
    from megapmc.data.jsonl import read_jsonl

    books = [rec for _, rec in read_jsonl(out)]
    assert [b["id"] for b in books] == [f"book-{i:02d}" for i in range(6)]
    for b in books:
        for leftover in (r"\[\d+", r"https?://", r"\bFig\.", r"\bTable \d", r"^References$", r"\.{4}", r"\bMD\b",
                         r"^\d+$", r"Essentials of Clinical Medicine, Volume \d+ +\d+"):
            assert not re.search(leftover, b["text"], re.M), (b["id"], leftover)
        assert len(b["text"]) > 5000


# ---- S2ORC → PubMed Central ----------------------------------------------------------------------


def test_pmc_id_forms():
    assert pmc_id({"pmc_id": "PMC3567245"}) == "PMC3567245"
    assert pmc_id({"metadata": {"pmc_id": "pmc42"}}) == "PMC42"
    assert pmc_id({"externalids": {"PubMedCentral": "3567245", "DOI": "x"}}) == "PMC3567245"
    assert pmc_id({"pmc_id": None, "pubmed_id": "123"}) is None
    with pytest.raises(ValueError, match="unreadable PMC id"):
        pmc_id({"pmc_id": "PMCabc"})


def test_paper_text_order_and_sections():
    record = {"title": "Lactate in sepsis", "abstract": [{"text": "We studied lactate."}],
              "body_text": [{"text": "Sepsis is common.", "section": "Introduction"},
                            {"text": "It kills.", "section": "Introduction"},
                            {"text": "We enrolled 90 adults.", "section": "Methods"},
                            {"text": "  ", "section": "Methods"}]}
    assert paper_text(record) == ("Lactate in sepsis\n\nWe studied lactate.\n\nIntroduction\n\nSepsis is common.\n\n"
                                  "It kills.\n\nMethods\n\nWe enrolled 90 adults.")
    assert paper_text(record, section_headings=False).count("Introduction") == 0


def test_convert_paper_counts_reasons():
    stats = S2orcFilterStats()
    assert convert_paper({"paper_id": "1", "title": "T"}, stats, 1) is None
    assert convert_paper({"paper_id": "2", "pmc_id": "PMC9"}, stats, 2) is None
    assert convert_paper({"paper_id": "3", "pmc_id": "bad"}, stats, 3) is None
    doc = convert_paper({"paper_id": "4", "pmc_id": "PMC7", "metadata": {"title": "T"},
                         "pdf_parse": {"body_text": [{"text": "B", "section": "S"}]}}, stats, 4)
    assert doc == {"id": "4", "pmc_id": "PMC7", "title": "T", "text": "T\n\nS\n\nB"}
    assert (stats.papers, stats.kept, stats.no_pmc_id, stats.no_text, stats.invalid_pmc_id) == (4, 1, 1, 1, 1)
    assert stats.issues == [(3, "unreadable PMC id 'bad'")]


def test_filter_s2orc_on_samples(tmp_path):
    out = tmp_path / "papers.jsonl.gz"
    stats = filter_s2orc(str(SAMPLES / "s2orc_sample.jsonl"), str(out), progress=False)
    assert stats.papers == 45 and stats.kept == 30 and stats.no_pmc_id == 15
    assert stats.malformed == 1 and stats.issues[0][0] == 46
    from megapmc.data.jsonl import read_jsonl

    papers = [rec for _, rec in read_jsonl(out)]
    assert len(papers) == 30 and all(p["pmc_id"].startswith("PMC") for p in papers)
    committed = [json.loads(line) for line in (SAMPLES / "papers.jsonl").read_text().splitlines()]
    assert papers == committed


def test_sample_files_are_what_the_generator_writes(tmp_path, monkeypatch):
    sys.path.insert(0, str(SAMPLES.parent))
    try:
        import make_pretrain_samples as gen
    finally:
        sys.path.pop(0)
    monkeypatch.setattr(gen, "OUT", tmp_path)
    gen.main()
    for name in ("books.jsonl", "s2orc_sample.jsonl", "papers.jsonl", "general.jsonl"):
        assert (tmp_path / name).read_bytes() == (SAMPLES / name).read_bytes(), name
    total = sum((SAMPLES / n).stat().st_size for n in ("books.jsonl", "papers.jsonl", "general.jsonl",
                                                        "s2orc_sample.jsonl"))
    assert 100_000 < total < 1_000_000


def test_clean_books_workers_match_one_process(tmp_path):
    one, _ = clean_books(str(SAMPLES / "books.jsonl"), str(tmp_path / "one.jsonl"), progress=False)
    two, _ = clean_books(str(SAMPLES / "books.jsonl"), str(tmp_path / "two.jsonl"), progress=False, workers=2)
    assert (tmp_path / "one.jsonl").read_bytes() == (tmp_path / "two.jsonl").read_bytes()
    assert one.as_dict() == two.as_dict()


def test_clean_books_counts_records_without_text(tmp_path):
    path = tmp_path / "in.jsonl"
    path.write_text(json.dumps({"text": "A book. [1]"}) + "\n" + json.dumps({"body": "x"}) + "\n{oops\n")
    stats, jstats = clean_books(str(path), str(tmp_path / "out.jsonl"), progress=False)
    assert stats.documents_out == 1 and jstats.malformed == 2
    assert [n for n, _ in jstats.issues] == [2, 3]
    assert json.loads((tmp_path / "out.jsonl").read_text())["text"] == "A book."


def test_filter_s2orc_split_release_joins_metadata_and_parses(tmp_path, capsys):
    meta = [{"paper_id": "1", "title": "Sepsis", "abstract": "Lactate matters.", "pmc_id": "PMC11"},
            {"paper_id": "2", "title": "No PMC", "abstract": "x", "pmc_id": None},
            {"paper_id": "3", "title": "Asthma", "abstract": None, "pmc_id": "PMC33"},
            {"paper_id": "4", "title": "Never parsed", "abstract": "y", "pmc_id": "PMC44"}]
    parses = [{"paper_id": "3", "abstract": [{"text": "Airways narrow."}],
               "body_text": [{"text": "Steroids help.", "section": "Results"}]},
              {"paper_id": "2", "body_text": [{"text": "ignored", "section": "S"}]},
              {"paper_id": "1", "abstract": [], "body_text": [{"text": "Fluids first.", "section": "Intro"}]}]
    (tmp_path / "metadata_0.jsonl").write_text("".join(json.dumps(m) + "\n" for m in meta))
    (tmp_path / "pdf_parses_0.jsonl").write_text("".join(json.dumps(p) + "\n" for p in parses) + "{bad\n")
    sys.path.insert(0, str(REPO / "tools"))
    try:
        import filter_s2orc as tool
    finally:
        sys.path.pop(0)
    out = tmp_path / "pmc.jsonl"
    assert tool.main(["--metadata", str(tmp_path / "metadata_0.jsonl"), "--pdf-parses",
                      str(tmp_path / "pdf_parses_0.jsonl"), "--output", str(out), "--no-progress"]) == 0
    docs = [json.loads(line) for line in out.read_text().splitlines()]
    assert docs == [{"id": "3", "pmc_id": "PMC33", "title": "Asthma",
                     "text": "Asthma\n\nAirways narrow.\n\nResults\n\nSteroids help."},
                    {"id": "1", "pmc_id": "PMC11", "title": "Sepsis",
                     "text": "Sepsis\n\nLactate matters.\n\nIntro\n\nFluids first."}]
    printed = capsys.readouterr().out
    assert "4 papers read, 2 kept" in printed and "1 without a PDF parse" in printed and "1 malformed" in printed
    with pytest.raises(SystemExit):
        tool.main(["--input", "a.jsonl", "--metadata", "m.jsonl", "--output", str(out)])


def test_outputs_go_into_new_folders(tmp_path):
    books = tmp_path / "new" / "books" / "clean.jsonl"
    papers = tmp_path / "other" / "papers.jsonl.zst"
    clean_books(str(SAMPLES / "books.jsonl"), str(books), progress=False)
    filter_s2orc(str(SAMPLES / "s2orc_sample.jsonl"), str(papers), progress=False)
    assert books.stat().st_size > 0 and papers.stat().st_size > 0
    assert sorted(p.name for p in books.parent.iterdir()) == ["clean.jsonl"]  # no temporary left behind
