"""S2ORC → PubMed Central papers on handmade records in the Semantic Scholar datasets release format.

The record layout follows the S2ORC example of the Semantic Scholar datasets release (a public copy:
QuiddityAI/InsightHub, scripts_and_examples/semantic_scholar/dataset_examples.md; schema at
api.semanticscholar.org/api-docs/datasets): ``corpusid``, ``externalids`` with lower-case keys
(``pubmedcentral`` a digit string or null), ``content.source``, ``content.text``, and
``content.annotations`` whose every kind is a JSON-encoded *string* of ``[{"end", "start",
"attributes"?}]`` or null. PMC-LLaMA's Pretrain/Data/tokenize_dataset.py reads the same fields
(``elem['content']['text']``, ``json.loads(elem['content']['annotations']['bibentry'])``,
``elem['externalids']['pubmedcentral']``).
"""
import gzip
import json
import sys
from pathlib import Path

import pytest
import zstandard

from megapmc.data.medc_k.pipeline import filter_s2orc, pair_split_shards
from megapmc.data.medc_k.s2orc import S2orcFilterStats, convert_paper, pmc_id

REPO = Path(__file__).resolve().parents[2]

KINDS = ("abstract", "author", "bibauthor", "bibentry", "bibref", "bibtitle", "bibvenue", "figure",
         "figurecaption", "figureref", "formula", "paragraph", "publisher", "sectionheader", "table",
         "tableref", "title", "venue")

TEXT = ("\nLactate clearance in septic shock\n\nJane Doe \nDepartment of Medicine, Leeds\n\n"
        "Lactate falls when shock resolves.\n\n"
        "1 Introduction\nSeptic shock kills one in three [1].\n\n"
        "2 Methods\nWe enrolled 90 adults.\nEach gave consent.\n\n"
        "Acknowledgments\n\n"
        "Data availability\nData are available on request. [1] Singer M. Sepsis-3. JAMA 2016.\n\n"
        "References\n[1] Singer M. Sepsis-3. JAMA 2016.\n")


def span(text, needle, nth=0, **attributes):
    """The {start, end} span of the nth occurrence of ``needle`` in ``text`` (as the release writes it)."""
    start = -1
    for _ in range(nth + 1):
        start = text.index(needle, start + 1)
    out = {"end": start + len(needle), "start": start}
    return {"attributes": attributes, **out} if attributes else out


def annotations(**kinds):
    """Every kind the release has: a JSON string of its spans, or null."""
    return {k: (json.dumps(kinds[k], separators=(",", ":")) if k in kinds else None) for k in KINDS}


def current_record(corpusid, pmc, text=TEXT, ann=None):
    return {"corpusid": corpusid,
            "externalids": {"arxiv": None, "mag": None, "acl": None, "pubmed": "36589072", "pubmedcentral": pmc,
                            "dblp": None, "doi": "10.3389/fpls.2022.1074889"},
            "content": {"source": {"pdfurls": None, "pdfsha": "b57a70144c90672103cea4f8ca8023ac9fab337b",
                                   "oainfo": None},
                        "text": text, "annotations": ann}}


def paper_annotations(t=TEXT):
    return annotations(
        title=[span(t, "Lactate clearance in septic shock")],
        author=[span(t, "Jane Doe")],
        abstract=[span(t, "Lactate falls when shock resolves.")],
        sectionheader=[span(t, "Introduction", n="1"), span(t, "Methods", n="2"), span(t, "Acknowledgments"),
                       span(t, "Data availability"), span(t, "References")],
        paragraph=[span(t, "Septic shock kills one in three [1]."),
                   span(t, "We enrolled 90 adults.\nEach gave consent."),
                   # The parser let the reference list run into the last paragraph.
                   span(t, "Data are available on request. [1] Singer M. Sepsis-3. JAMA 2016.")],
        bibref=[span(t, "[1]")],
        bibentry=[span(t, "[1] Singer M. Sepsis-3. JAMA 2016.", 0), span(t, "[1] Singer M. Sepsis-3. JAMA 2016.", 1)],
        venue=[span(t, "Department of Medicine, Leeds")],
    )


EXPECTED_TEXT = ("Lactate clearance in septic shock\n\nLactate falls when shock resolves.\n\n"
                 "Introduction\n\nSeptic shock kills one in three [1].\n\n"
                 "Methods\n\nWe enrolled 90 adults.\nEach gave consent.\n\n"
                 "Data availability\n\nData are available on request.")


def test_current_release_paper_text():
    stats = S2orcFilterStats()
    doc = convert_paper(current_record(254640939, "9798118", ann=paper_annotations()), stats, 1)
    assert doc == {"id": "254640939", "pmc_id": "PMC9798118", "title": "Lactate clearance in septic shock",
                   "text": EXPECTED_TEXT}
    no_headings = convert_paper(current_record(1, "9798118", ann=paper_annotations()), stats, 2,
                                section_headings=False)
    assert no_headings["text"] == ("Lactate clearance in septic shock\n\nLactate falls when shock resolves.\n\n"
                                   "Septic shock kills one in three [1].\n\nWe enrolled 90 adults.\nEach gave "
                                   "consent.\n\nData are available on request.")
    assert (stats.papers, stats.kept) == (2, 2)


def test_pmc_id_in_every_spelling():
    assert pmc_id(current_record(1, "9798118")) == "PMC9798118"
    assert pmc_id(current_record(1, 9798118)) == "PMC9798118"  # the Parquet redistributions keep an int
    assert pmc_id(current_record(1, None)) is None
    assert pmc_id({"externalIds": {"PubMedCentral": "42"}}) == "PMC42"


def _shard_lines():
    t = "Untitled\n\nSome text."
    return [
        json.dumps(current_record(11, "111", ann=paper_annotations())),
        json.dumps(current_record(12, None, ann=paper_annotations())),                 # no PMC id
        json.dumps(current_record(13, "133", text=None, ann=None)),                    # no text
        json.dumps(current_record(14, "144", text=t, ann={**annotations(), "paragraph": '[{"end":5,"sta'})),
        json.dumps(current_record(15, "155", text=t, ann=annotations(paragraph=[{"end": 99, "start": 10}]))),
        "{oops",
        json.dumps(current_record(17, 177, text=t, ann=annotations(paragraph=[span(t, "Some text.")]))),
    ]


def test_filter_counts_every_reason_with_its_line(tmp_path):
    src = tmp_path / "s2orc-part0.gz"
    with gzip.open(src, "wt") as f:
        f.write("\n".join(_shard_lines()) + "\n")
    out = tmp_path / "pmc.jsonl"
    stats = filter_s2orc(str(src), str(out), progress=False)
    assert stats.counts() == {"papers": 6, "kept": 2, "no_pmc_id": 1, "invalid_pmc_id": 0, "no_text": 1,
                              "bad_annotations": 2, "no_parse": 0, "malformed": 1}
    assert [n for n, _ in stats.issues] == [4, 5, 6]
    assert "content.annotations.paragraph is not a JSON list" in stats.issues[0][1]
    assert "span {'end': 99, 'start': 10} is not a start <= end inside the 20-character" in stats.issues[1][1]
    docs = [json.loads(line) for line in out.read_text().splitlines()]
    assert docs == [{"id": "11", "pmc_id": "PMC111", "title": "Lactate clearance in septic shock",
                     "text": EXPECTED_TEXT},
                    {"id": "17", "pmc_id": "PMC177", "title": "", "text": "Some text."}]


def _tool():
    sys.path.insert(0, str(REPO / "tools"))
    try:
        import filter_s2orc as tool
    finally:
        sys.path.pop(0)
    return tool


def test_fan_out_over_gz_and_zst_shards_resumes_and_reports_a_broken_one(tmp_path, capsys):
    shards = tmp_path / "s2orc"
    shards.mkdir()
    lines = _shard_lines()
    with gzip.open(shards / "part0.gz", "wt") as f:
        f.write("\n".join(lines[:3]) + "\n")
    (shards / "part1.zst").write_bytes(zstandard.ZstdCompressor().compress(("\n".join(lines[3:]) + "\n").encode()))
    tool = _tool()
    out = tmp_path / "pmc"
    argv = ["--input", f"{shards}/*", "--output-dir", str(out), "--workers", "2", "--no-progress"]
    assert tool.main(argv) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["total"] == {"papers": 6, "kept": 2, "no_pmc_id": 1, "invalid_pmc_id": 0, "no_text": 1,
                                "bad_annotations": 2, "no_parse": 0, "malformed": 1}
    assert [(Path(r["output"]).name, r["kept"]) for r in summary["shards"]] == [("part0.jsonl.zst", 1),
                                                                                 ("part1.jsonl.zst", 1)]
    from megapmc.data.jsonl import read_jsonl

    assert [rec["text"] for _, rec in read_jsonl(out / "part0.jsonl.zst")] == [EXPECTED_TEXT]
    printed = capsys.readouterr().out
    assert "6 papers read, 2 kept" in printed
    assert f"{shards / 'part1.zst'}:2: content.annotations.paragraph: span" in printed  # file:line of a bad record
    # A rerun skips what is done; a corrupt new shard fails alone, and what was written stays.
    (shards / "part2.gz").write_bytes(b"\x1f\x8b\x08\x00not really gzip")
    before = (out / "part0.jsonl.zst").read_bytes()
    assert tool.main(argv) == 1
    summary = json.loads((out / "summary.json").read_text())
    assert [r["skipped_existing"] for r in summary["shards"]] == [True, True]
    assert summary["total"]["kept"] == 2 and Path(summary["failed"][0]["input"][0]).name == "part2.gz"
    assert "part2.gz" in capsys.readouterr().err
    assert (out / "part0.jsonl.zst").read_bytes() == before
    assert sorted(p.name for p in out.iterdir()) == ["part0.jsonl.zst", "part0.jsonl.zst.stats.json",
                                                     "part1.jsonl.zst", "part1.jsonl.zst.stats.json",
                                                     "summary.json"]
    with pytest.raises(SystemExit):
        tool.main(["--input", f"{shards}/*", "--output", str(tmp_path / "one.jsonl")])


def test_fan_out_pairs_the_2020_split_files(tmp_path):
    # The 2020 layout (allenai/s2orc data/v2020-07-05/README.md): metadata/metadata_N.jsonl.gz beside
    # pdf_parses/pdf_parses_N.jsonl.gz, joined on paper_id.
    for n in (0, 1):
        (tmp_path / "metadata").mkdir(exist_ok=True)
        (tmp_path / "pdf_parses").mkdir(exist_ok=True)
        with gzip.open(tmp_path / f"metadata/metadata_{n}.jsonl.gz", "wt") as f:
            f.write(json.dumps({"paper_id": f"{n}", "title": f"Paper {n}", "abstract": None,
                                "pmc_id": f"PMC{n + 5}"}) + "\n")
        with gzip.open(tmp_path / f"pdf_parses/pdf_parses_{n}.jsonl.gz", "wt") as f:
            f.write(json.dumps({"paper_id": f"{n}", "abstract": [],
                                "body_text": [{"text": f"Body {n}.", "section": "Results"}]}) + "\n")
    tool = _tool()
    out = tmp_path / "pmc"
    assert tool.main(["--metadata", f"{tmp_path}/metadata/*.gz", "--pdf-parses", f"{tmp_path}/pdf_parses/*.gz",
                      "--output-dir", str(out), "--output-suffix", ".jsonl", "--no-progress"]) == 0
    assert json.loads((out / "metadata_1.jsonl").read_text()) == {
        "id": "1", "pmc_id": "PMC6", "title": "Paper 1", "text": "Paper 1\n\nResults\n\nBody 1."}
    with pytest.raises(ValueError, match="no partner shard"):
        pair_split_shards(["m/metadata_3.jsonl.gz"], ["p/pdf_parses_4.jsonl.gz"])
