"""Keep the S2ORC papers that carry a PubMed Central id and write their text as JSONL (title, abstract, body).

Reads the Semantic Scholar datasets release of S2ORC (``corpusid``, ``externalids.pubmedcentral``,
``content.text`` + ``content.annotations``) and the 2020 release (metadata + pdf_parses), .jsonl, .gz or
.zst, in constant memory.

    python tools/filter_s2orc.py --input s2orc/part0.gz --output pmc/part0.jsonl.zst     # one shard
    python tools/filter_s2orc.py --input 's2orc/*.gz' --output-dir pmc --workers 8       # every shard
    python tools/filter_s2orc.py --metadata metadata_0.jsonl.gz --pdf-parses pdf_parses_0.jsonl.gz \\
        --output pmc_papers_0.jsonl          # the 2020 release: its split files, one shard
    python tools/filter_s2orc.py --metadata 'metadata/*.gz' --pdf-parses 'pdf_parses/*.gz' \\
        --output-dir pmc --workers 8         # ... or all of them, paired by shard number
With --output-dir each shard goes to OUTPUT_DIR/<shard>.jsonl.zst with its counts beside it
(<output>.stats.json); OUTPUT_DIR/summary.json holds the counts of every shard and their total. A rerun
skips the shards already done. Then tokenize with tools/preprocess_data.py --input ...
"""
import argparse
import glob
import sys

from megapmc.data.medc_k.pipeline import (SUMMARY_NAME, filter_s2orc, filter_s2orc_shards, filter_s2orc_split,
                                          pair_split_shards)
from megapmc.data.medc_k.s2orc import S2orcFilterStats


def _expand(pattern: str) -> list[str]:
    """A file, or the files a glob pattern matches (sorted, so shard order is stable)."""
    return sorted(glob.glob(pattern)) if glob.has_magic(pattern) else [pattern]


def _print_summary(summary: dict, output_dir: str) -> None:
    for row in summary["shards"]:
        note = " (done before, skipped)" if row["skipped_existing"] else ""
        print(f"{' + '.join(row['input'])}: {row['papers']:,} papers, {row['kept']:,} kept{note}")
        print("".join(f"  {row['input'][0]}:{n}: {reason}\n" for n, reason in row["issues"]), end="")
    for row in summary["failed"]:
        print(f"error: {' + '.join(row['input'])}: {row['error']} (nothing written for it; fix and rerun)",
              file=sys.stderr)
    total = S2orcFilterStats(**summary["total"])
    print(total.format(f"{len(summary['shards'])} shards").split("\n")[0])
    print(f"summary: {output_dir}/{SUMMARY_NAME}")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--input", help="S2ORC JSONL shard (.jsonl, .gz, .zst), or a quoted glob with --output-dir")
    p.add_argument("--metadata", help="S2ORC 2020 metadata shard or glob (use with --pdf-parses instead of --input)")
    p.add_argument("--pdf-parses", help="the PDF-parse shard (or glob) that goes with --metadata")
    out = p.add_mutually_exclusive_group(required=True)
    out.add_argument("--output", help="output JSONL of one shard (compressed by suffix)")
    out.add_argument("--output-dir", help="one output per input shard here, plus summary.json")
    p.add_argument("--output-suffix", default=".jsonl.zst", help="with --output-dir: suffix of each output")
    p.add_argument("--workers", type=int, default=1, help="with --output-dir: shards filtered at once")
    p.add_argument("--no-section-headings", action="store_true", help="leave section titles out of the text")
    p.add_argument("--strict", action="store_true", help="stop at the first malformed line")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    if bool(args.input) == bool(args.metadata or args.pdf_parses) or bool(args.metadata) != bool(args.pdf_parses):
        p.error("give either --input, or both --metadata and --pdf-parses")
    headings, progress = not args.no_section_headings, not args.no_progress
    try:
        if args.output_dir:
            if args.input:
                shards = [(path,) for path in _expand(args.input)]
            else:
                shards = pair_split_shards(_expand(args.metadata), _expand(args.pdf_parses))
            summary = filter_s2orc_shards(shards, args.output_dir, args.workers, headings, args.strict,
                                          args.output_suffix, progress)
            _print_summary(summary, args.output_dir)
            return 1 if summary["failed"] else 0
        if any(glob.has_magic(x or "") for x in (args.input, args.metadata, args.pdf_parses)):
            p.error("a glob pattern needs --output-dir (one output per shard), not --output")
        if args.input:
            stats = filter_s2orc(args.input, args.output, section_headings=headings, strict=args.strict,
                                 progress=progress)
        else:
            stats = filter_s2orc_split(args.metadata, args.pdf_parses, args.output, section_headings=headings,
                                       strict=args.strict, progress=progress)
    except (OSError, ValueError) as e:  # MalformedLineError is a ValueError
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(stats.format(args.input or args.metadata))
    return 0


if __name__ == "__main__":
    sys.exit(main())
