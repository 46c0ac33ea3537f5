import random
import shutil
from collections import Counter

import pytest

from megapmc.sft.sources.common import BadRecordError, Problems
from megapmc.sft.sources.umls import UmlsConfig, load_umls, read_definitions, read_names


def _records(umls_dir, **config):
    stats = Counter()
    records = list(load_umls(umls_dir, UmlsConfig(**config), Problems(), stats))
    return records, stats


def test_names_are_english_non_suppressed_and_preferred(sample_sft_dir):
    names = read_names(sample_sft_dir / "umls" / "MRCONSO.RRF", UmlsConfig(), Problems())
    # The suppressed "Hypertension, NOS" atom has the smallest AUI and the French one is also PF: neither wins.
    assert names["C0020538"] == "Hypertension"
    # ISPREF=Y beats a higher-priority source with ISPREF=N.
    assert names["C0011860"] == "Type 2 diabetes mellitus"
    assert "C9999999" not in names  # German only
    assert "C8888888" not in names  # suppressed (E)
    assert len(names) == 10


def test_definitions_are_chosen_deterministically(sample_sft_dir):
    umls = sample_sft_dir / "umls"
    names = read_names(umls / "MRCONSO.RRF", UmlsConfig(), Problems())
    definitions = read_definitions(umls / "MRDEF.RRF", names, UmlsConfig(), Problems())
    assert definitions["C0020538"] == "Persistently high systemic arterial blood pressure."  # MSH over NCI, not the suppressed one
    assert definitions["C0025598"].startswith("A biguanide")  # CSP is ranked, XYZ is not
    assert definitions["C0027051"] == ("Necrosis of the myocardium caused by an obstruction of the blood supply "
                                       "to the heart.")  # markup stripped
    assert "C9999999" not in definitions
    other = read_definitions(umls / "MRDEF.RRF", names, UmlsConfig(source_priority=("NCI",)), Problems())
    assert other["C0020538"] == "Blood pressure that is persistently above normal."


def test_prompts_from_the_fixtures(sample_sft_dir):
    records, stats = _records(sample_sft_dir / "umls")
    by_id = {r.id: r for r in records}
    describe = by_id["umls-def-C0020538"]
    assert describe.input == "Hypertension"
    assert describe.output == "Persistently high systemic arterial blood pressure."
    isa = by_id["umls-rel-isa-C0025859-C0001645"]  # read right to left: CUI2 isa CUI1
    assert isa.input == "Entity 1: Metoprolol\nEntity 2: Beta blocker"
    assert isa.output == "Metoprolol is a Beta blocker."
    assert by_id["umls-rel-RB-C0003364-C0025859"].output == "Antihypertensive agent is broader than Metoprolol."
    assert by_id["umls-rel-finding_site_of-C0018787-C0027051"].output == "Heart is finding site of Myocardial infarction."
    assert stats["relation:may_treat"] == 3  # the NDFRT duplicate of a MED-RT pair counts once
    relations = [r for r in records if r.id.startswith("umls-rel-")]
    text = " ".join(r.input + r.output for r in records)
    assert "Nur deutsch" not in text and "Obsolete" not in text and "may prevent" not in text  # suppressed row
    assert not any("SIB" in r.id for r in relations)  # sibling rows without RELA are not prompts
    assert len(relations) == 8 and stats["definitions"] == 5
    instructions = {r.instruction for r in records}
    assert len(instructions) > 2  # drawn per record from the pools


def test_caps_per_relation_type(sample_sft_dir):
    records, stats = _records(sample_sft_dir / "umls", max_per_relation=1, relation_caps={"may_treat": 2},
                              max_definitions=2)
    assert stats["relation:may_treat"] == 2 and stats["relation:isa"] == 1 and stats["definitions"] == 2
    records, stats = _records(sample_sft_dir / "umls", relation_types=("isa",), max_definitions=0)
    assert [r.id for r in records] == ["umls-rel-isa-C0025859-C0001645"]


def test_sampling_does_not_depend_on_file_order(tmp_path, sample_sft_dir):
    for name in ("MRCONSO.RRF", "MRDEF.RRF", "MRREL.RRF"):
        lines = (sample_sft_dir / "umls" / name).read_text().splitlines(keepends=True)
        random.Random(1).shuffle(lines)
        (tmp_path / name).write_text("".join(lines))
    config = dict(max_per_relation=1, max_definitions=3, seed=5)
    original, _ = _records(sample_sft_dir / "umls", **config)
    shuffled, _ = _records(tmp_path, **config)
    assert sorted((r.id, r.output) for r in original) == sorted((r.id, r.output) for r in shuffled)


def test_malformed_rows_are_reported_with_line_numbers(tmp_path, sample_sft_dir):
    shutil.copytree(sample_sft_dir / "umls", tmp_path / "umls")
    mrrel = tmp_path / "umls" / "MRREL.RRF"
    lines = mrrel.read_text().splitlines(keepends=True)
    lines.insert(2, "C0001|A1|AUI|RO|C0002|\n")
    mrrel.write_text("".join(lines))
    problems = Problems()
    records = list(load_umls(tmp_path / "umls", UmlsConfig(), problems))
    assert len(records) == 13
    assert problems.examples == [f"{mrrel}:3: 5 fields, expected 16 for MRREL.RRF"]
    with pytest.raises(BadRecordError, match=r"MRREL.RRF:3"):
        list(load_umls(tmp_path / "umls", UmlsConfig(), Problems(strict=True)))


def test_missing_mrconso_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="MRCONSO.RRF: missing"):
        list(load_umls(tmp_path, UmlsConfig(), Problems()))
