"""Write a world's files into one directory, each atomically (megapmc.utils.io).

    OUT/world.json                   entities and facts with their split and coverage (to audit the rest)
    OUT/corpus/{books,papers,general}.jsonl   the pretraining corpora ({"id", "text"[, "title"]} per line)
    OUT/tokenizer/prompts.jsonl      the prompts' fixed wording, for the tokenizer only (corpora.prompt_text)
    OUT/heldout/general.jsonl        general text never trained on (the forgetting check)
    OUT/benchmarks/...               MedQA, MedMCQA, PubMedQA files in their original layout (tools/evaluate.py)
    OUT/medc_i/conversations.json, instruction_pool.json, rationales.jsonl, umls/MRCONSO.RRF ...
"""
from __future__ import annotations

import json
import random
from pathlib import Path

from megapmc.sample_data.world import corpora, medc_i
from megapmc.sample_data.world.benchmarks import build_benchmarks
from megapmc.sample_data.world.entities import generate_world
from megapmc.utils.io import write_text_atomic

GENERAL_DOCS, HELDOUT_GENERAL_DOCS = 300, 60


def _jsonl(rows: list[dict]) -> str:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)


def write_world(output_dir: str | Path, seed: int = 1234, num_diseases: int = 72) -> dict:
    """Write every file; return counts for a summary. The same arguments always write the same bytes."""
    out = Path(output_dir)
    world = generate_world(seed, num_diseases)
    # One stream per output, so that changing one generator leaves the others' text as it was.
    rng = {name: random.Random(f"{seed}-{name}") for name in ("books", "papers", "general", "heldout", "bench",
                                                              "chat")}
    files: dict[str, str] = {"world.json": json.dumps(world.to_json(), indent=1) + "\n"}
    books = corpora.books(world, rng["books"])
    papers = corpora.papers(world, rng["papers"])
    files["corpus/books.jsonl"] = _jsonl(books)
    files["corpus/papers.jsonl"] = _jsonl(papers)
    files["corpus/general.jsonl"] = _jsonl(corpora.general_text(rng["general"], GENERAL_DOCS, "general"))
    files["tokenizer/prompts.jsonl"] = _jsonl(corpora.prompt_text())
    files["heldout/general.jsonl"] = _jsonl(corpora.general_text(rng["heldout"], HELDOUT_GENERAL_DOCS, "heldout"))
    bench = build_benchmarks(world, rng["bench"])
    for path, content in bench.files.items():
        files[f"benchmarks/{path}"] = _jsonl(content) if isinstance(content, list) else json.dumps(content, indent=1)
    files["medc_i/conversations.json"] = json.dumps(medc_i.conversations(world, rng["chat"]), indent=1)
    files["medc_i/instruction_pool.json"] = json.dumps(medc_i.INSTRUCTION_POOL, indent=1)
    files["medc_i/rationales.jsonl"] = _jsonl(medc_i.rationales(world, bench))
    for name, rows in medc_i.umls_files(world).items():
        files[f"medc_i/umls/{name}"] = "".join(r + "\n" for r in rows)
    for rel, text in files.items():
        path = out / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(path, text)
    held = [f for f in world.facts if f.split == "heldout"]
    return {
        "entities": len(world.drugs) + len(world.diseases) + len(world.findings) + len(world.mechanisms),
        "facts": len(world.facts), "heldout facts": len(held),
        "heldout facts in books / papers": f"{sum(f.in_books for f in held)} / {sum(f.in_papers for f in held)}",
        "documents (books, papers)": f"{len(books)}, {len(papers)}",
        "test items (medqa, medmcqa, pubmedqa)": ", ".join(str(len(bench.files[p])) for p in (
            "medqa/US/4_options/phrases_no_exclude_test.jsonl", "medmcqa/dev.json", "pubmedqa/test_ground_truth.json")),
        "written to": str(out),
    }
