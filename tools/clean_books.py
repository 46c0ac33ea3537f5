"""Clean text extracted from medical-book PDFs (MedC-K): URLs, author lines, tables of contents, reference
sections, citation markers, figure/table references, repeated page headers/footers, duplicate paragraphs,
and duplicate and near-duplicate books (MinHash LSH). Prints what each rule removed.

    python tools/clean_books.py --input books_raw.jsonl --output books.jsonl [--report report.json] \
        [--near-duplicate-threshold 0.8]
"""
import argparse
import sys

from megapmc.data.medc_k.books import RULES, BookCleanConfig
from megapmc.data.medc_k.pipeline import clean_books
from megapmc.utils.io import write_json_atomic


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--input", required=True, help="JSONL with one book per line (.jsonl, .gz, .zst)")
    p.add_argument("--output", required=True, help="cleaned JSONL (compressed by suffix)")
    p.add_argument("--text-key", default="text")
    p.add_argument("--disable", nargs="*", default=[], choices=RULES, metavar="RULE",
                   help=f"rules to skip: {', '.join(RULES)}")
    p.add_argument("--min-header-repeats", type=int, default=3, help="pages a header/footer must repeat on")
    p.add_argument("--near-duplicate-threshold", type=float, default=0.8,
                   help="word 5-gram Jaccard similarity (MinHash estimate) at which a book is dropped as a near "
                        "copy of an earlier one; --disable near_duplicate_documents turns this off")
    p.add_argument("--workers", type=int, default=1, help="cleaning processes")
    p.add_argument("--report", help="also write the per-rule report as JSON here")
    p.add_argument("--strict", action="store_true", help="stop at the first malformed line")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    try:
        cfg = BookCleanConfig(min_header_repeats=args.min_header_repeats, disabled_rules=tuple(args.disable),
                              near_duplicate_threshold=args.near_duplicate_threshold)
        stats, jstats = clean_books(args.input, args.output, cfg, text_key=args.text_key, strict=args.strict,
                                    progress=not args.no_progress, workers=args.workers)
    except (OSError, ValueError) as e:  # MalformedLineError is a ValueError
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(stats.format())
    if jstats.malformed:
        print(f"skipped {jstats.malformed:,} bad lines:\n{jstats.describe_issues(args.input)}")
    if args.report:
        write_json_atomic(args.report, {**stats.as_dict(), "skipped_lines": jstats.malformed})
    return 0


if __name__ == "__main__":
    sys.exit(main())
