"""The generated world behind the ablation: deterministic, every held-out fact in the corpora and in no
MedC-I source, benchmark files that the evaluator's own loaders read without a malformed record."""
import json
from pathlib import Path

import pytest

from megapmc.evaluation.tasks import get_task
from megapmc.sample_data.world import generate_world, write_world
from megapmc.sample_data.world import prose


@pytest.fixture(scope="module")
def world_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("world")
    write_world(out, seed=7, num_diseases=24)
    return out


def _read_all(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_same_bytes(world_dir, tmp_path):
    write_world(tmp_path, seed=7, num_diseases=24)
    assert _read_all(tmp_path) == _read_all(world_dir)


def test_heldout_facts_are_in_the_corpora_and_never_in_instruction_sources(world_dir):
    world = generate_world(7, 24)
    books = (world_dir / "corpus" / "books.jsonl").read_text()
    papers = (world_dir / "corpus" / "papers.jsonl").read_text()
    medc_i = "".join(p.read_text() for p in (world_dir / "medc_i").rglob("*") if p.is_file())
    # MedC-I is also built from the benchmarks' training files (MedQA/MedMCQA train, PubMedQA minus test).
    bench = world_dir / "benchmarks"
    train = ((bench / "medqa/US/4_options/phrases_no_exclude_train.jsonl").read_text()
             + (bench / "medmcqa/train.json").read_text())
    test_pmids = set(json.loads((bench / "pubmedqa/test_ground_truth.json").read_text()))
    pqal = json.loads((bench / "pubmedqa/ori_pqal.json").read_text())
    train += json.dumps({k: v for k, v in pqal.items() if k not in test_pmids})
    held = [f for f in world.facts if f.split == "heldout"]
    assert held
    for fact in held:
        stated_in_books = any(s in books for s in prose.book_sentences(fact))
        stated_in_papers = any(s in papers for s in prose.paper_sentences(fact))
        assert stated_in_books == fact.in_books and stated_in_papers == fact.in_papers, fact
        for sentence in prose.book_sentences(fact) + prose.paper_sentences(fact):
            assert sentence not in medc_i and sentence not in train, (fact, sentence)


@pytest.mark.parametrize("task", ["medqa", "medmcqa", "pubmedqa"])
def test_evaluator_reads_every_benchmark_file(world_dir, task):
    for split in ("test", "train"):
        loaded = get_task(task).load(world_dir / "benchmarks", split)
        assert loaded.items and not loaded.malformed, (split, loaded.malformed[:3])
        assert len({it.id for it in loaded.items}) == len(loaded.items)


def test_bad_size_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="num_diseases must be"):
        write_world(tmp_path, num_diseases=25)
    assert not any(tmp_path.iterdir())


def test_tokenizer_prompt_wording_names_no_entity(world_dir):
    world = generate_world(7, 24)
    text = (world_dir / "tokenizer" / "prompts.jsonl").read_text()
    names = world.drugs + world.diseases + world.findings + world.mechanisms
    assert "### Instruction:" in text and [n for n in names if n in text] == []


def test_teacher_rationales_name_the_answer_first(world_dir):
    # The ablation scores each option's text right after "###Rationale:" (after the restated question
    # for PubMedQA), so a training rationale must put the answer there.
    bench = world_dir / "benchmarks"
    rationales = {r["id"]: r["rationale"] for r in map(json.loads, (world_dir / "medc_i/rationales.jsonl")
                                                         .read_text().splitlines())}
    medqa = [json.loads(line) for line in (bench / "medqa/US/4_options/phrases_no_exclude_train.jsonl").open()]
    medmcqa = [json.loads(line) for line in (bench / "medmcqa/train.json").open()]
    test_pmids = set(json.loads((bench / "pubmedqa/test_ground_truth.json").read_text()))
    pqal = {k: v for k, v in json.loads((bench / "pubmedqa/ori_pqal.json").read_text()).items()
            if k not in test_pmids}
    expected = {f"medqa-{i}": row["answer"] + ". " for i, row in enumerate(medqa, 1)}
    expected |= {f"medmcqa-{row['id']}": row["op" + "abcd"[row["cop"] - 1]] + ". " for row in medmcqa}
    expected |= {f"pubmedqa-{k}": f"{v['QUESTION']} {v['final_decision']}. " for k, v in pqal.items()}
    assert expected and set(rationales) == set(expected)
    for key, start in expected.items():
        assert rationales[key].startswith(start), (key, rationales[key])
