#!/usr/bin/env python
"""Build the MedC-I instruction data (JSONL) from local files in their original formats.

    python tools/build_instruction_data.py --output medc_i.jsonl \\
        --conversations chatdoctor.json medalpaca.json --instruction-pool instruction_pool.json \\
        --medqa US/4_options/phrases_no_exclude_train.jsonl --medmcqa train.json --pubmedqa ori_pqaa.json \\
        --rationales rationales.jsonl \\
        --umls-dir 2023AA/META --umls-max-per-relation 2000 \\
        --medc-i release.json --cap umls=100000 --weight conversations=1.5 --tokenizer-model tokenizer.model

Writes OUT, OUT.summary.json (records and tokens per source, bad records with file:line) and, with an
instruction pool, OUT.pools.json (for per-epoch redraws in tools/preprocess_sft.py). File formats are
described in megapmc/sft/sources/*.py. Bad records are skipped and listed; --strict stops at the first.
"""
from __future__ import annotations

import argparse
import sys

from megapmc.sft.build import SOURCES, BuildConfig, build_instruction_data, summary_path
from megapmc.sft.sources.common import BadRecordError
from megapmc.sft.sources.umls import UmlsConfig


def _pairs(values: list[str], flag: str, kind) -> dict:
    out = {}
    for value in values:
        name, sep, number = value.partition("=")
        try:
            out[name] = kind(number)
        except ValueError:
            sep = ""
        if not sep:
            raise ValueError(f"{flag} {value!r}: expected SOURCE=NUMBER with SOURCE one of {', '.join(SOURCES)}")
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--output", required=True, help="instruction JSONL to write")
    p.add_argument("--conversations", nargs="+", default=[], help="ChatDoctor/MedAlpaca-style JSON or JSONL")
    p.add_argument("--instruction-pool", help="paraphrases of the seed instructions (text lines or JSON)")
    p.add_argument("--medqa", nargs="+", default=[],
                   help="MedQA-USMLE train split (JSONL; the 4-option US/4_options/phrases_no_exclude_train.jsonl)")
    p.add_argument("--medmcqa", nargs="+", default=[], help="MedMCQA train split (JSON lines)")
    p.add_argument("--medmcqa-cop-base", type=int, choices=(0, 1), help="default: detected per file")
    p.add_argument("--pubmedqa", nargs="+", default=[], help="PubMedQA ori_pqaa.json (PQA-A, the training set)")
    p.add_argument("--pubmedqa-exclude", nargs="+", default=[], help="split files whose PMIDs to leave out")
    p.add_argument("--rationales", nargs="+", default=[], help="teacher rationales: JSONL {id, rationale}")
    p.add_argument("--umls-dir", help="directory with MRCONSO.RRF, MRDEF.RRF, MRREL.RRF")
    p.add_argument("--umls-max-definitions", type=int, default=50_000)
    p.add_argument("--umls-max-per-relation", type=int, default=2_000)
    p.add_argument("--umls-relation-cap", nargs="+", default=[], metavar="RELA=N", help="per relation type")
    p.add_argument("--umls-relations", nargs="+", help="only these relation types (RELA, or PAR/CHD/RB/RN)")
    p.add_argument("--umls-sources", nargs="+", help="only these UMLS source vocabularies (SAB)")
    p.add_argument("--umls-max-srl", type=int, help="only names of sources with this license level or lower")
    p.add_argument("--medc-i", nargs="+", default=[], help="released MedC-I (release.json), merged byte for byte")
    p.add_argument("--answers-only", action="store_true",
                   help="task-specific fine-tuning: short-answer rows only, each with the evaluation's prompt")
    p.add_argument("--cap", nargs="+", default=[], metavar="SOURCE=N", help="at most N records of SOURCE")
    p.add_argument("--weight", nargs="+", default=[], metavar="SOURCE=W", help="repeat (W>1) or subsample (W<1)")
    p.add_argument("--tokenizer-model", help="count tokens per source in the summary")
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--strict", action="store_true", help="stop at the first bad record")
    p.add_argument("--no-progress-bar", action="store_true")
    args = p.parse_args(argv)

    try:
        config = BuildConfig(
            conversations=args.conversations, instruction_pool=args.instruction_pool, medqa=args.medqa,
            medmcqa=args.medmcqa, medmcqa_cop_base=args.medmcqa_cop_base, pubmedqa=args.pubmedqa,
            pubmedqa_exclude=args.pubmedqa_exclude, rationales=args.rationales, umls_dir=args.umls_dir,
            umls=UmlsConfig(max_definitions=args.umls_max_definitions, max_per_relation=args.umls_max_per_relation,
                            relation_caps=_pairs(args.umls_relation_cap, "--umls-relation-cap", int),
                            relation_types=tuple(args.umls_relations) if args.umls_relations else None,
                            sources=tuple(args.umls_sources) if args.umls_sources else None,
                            max_srl=args.umls_max_srl, seed=args.seed,
                            progress=not args.no_progress_bar),
            medc_i=args.medc_i, caps=_pairs(args.cap, "--cap", int), weights=_pairs(args.weight, "--weight", float),
            answers_only=args.answers_only, seed=args.seed, strict=args.strict)
    except (ValueError, FileNotFoundError) as e:
        p.error(str(e))
    tokenizer = None
    if args.tokenizer_model:
        from megapmc.data.tokenizer import build_tokenizer

        tokenizer = build_tokenizer(args.tokenizer_model)
    try:
        summary = build_instruction_data(config, args.output, tokenizer, progress=not args.no_progress_bar)
    except BadRecordError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(summary.table())
    if summary.problems:
        print(f"bad records (first {len(summary.problems)}; all counts in {summary_path(args.output)}):")
        print("\n".join(f"  {m}" for m in summary.problems))
    print(f"wrote {summary.records} records to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
