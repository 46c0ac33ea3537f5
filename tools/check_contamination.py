#!/usr/bin/env python
"""N-gram overlap between training data and the benchmark test sets (PubMedQA, MedMCQA, MedQA-USMLE).

    python tools/check_contamination.py --train medc_i.jsonl pretrain_shard_*.jsonl.zst \\
        --data-dir BENCH --output-dir OUT [--ngram 13] [--text-key text]

Writes OUT/contamination.json (every contaminated item with where its first overlap is) and
OUT/contamination.md, and prints the table. --data-dir holds the original benchmark files (the layout
is documented in tools/evaluate.py); --train takes JSON-lines files (.jsonl, .jsonl.gz, .jsonl.zst).
"""
import argparse

from megapmc.evaluation.contamination import check_contamination, write_contamination
from megapmc.evaluation.evaluator import DEFAULT_TASKS, SAMPLE_DATA_DIR
from megapmc.evaluation.tasks import get_task


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--train", nargs="+", required=True, help="instruction data or pretraining JSON-lines files")
    p.add_argument("--data-dir", default=SAMPLE_DATA_DIR, help="directory of the original benchmark files")
    p.add_argument("--tasks", default=",".join(DEFAULT_TASKS))
    p.add_argument("--output-dir", required=True)
    p.add_argument("--ngram", type=int, default=13, help="n-gram length in words (13 as GPT-3 and the harness)")
    p.add_argument("--min-short-words", type=int, default=8,
                   help="fields shorter than --ngram but this long are matched whole (0: skip them)")
    p.add_argument("--text-key", help="read only this field of each record (default: every string in it)")
    p.add_argument("--workers", type=int, default=1, help="processes scanning the training text")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    try:
        items = {}
        for name in (t for t in args.tasks.split(",") if t):
            loaded = get_task(name).load(args.data_dir, "test")
            items[name] = loaded.items
        report = check_contamination(items, args.train, n=args.ngram, text_key=args.text_key,
                                     min_short_words=args.min_short_words, workers=args.workers)
    except (ValueError, FileNotFoundError) as e:
        raise SystemExit(f"error: {e}") from None
    write_contamination(report, args.output_dir)
    print(report.markdown(), end="")


if __name__ == "__main__":
    main()
