"""Keep the S2ORC papers that carry a PubMed Central id and write their text as JSONL (title, abstract, body).

    python tools/filter_s2orc.py --input s2orc.jsonl.gz --output pmc_papers.jsonl
    python tools/filter_s2orc.py --metadata metadata_0.jsonl.gz --pdf-parses pdf_parses_0.jsonl.gz \\
        --output pmc_papers_0.jsonl          # the S2ORC 2020 release's split files, one shard at a time
Then tokenize with tools/preprocess_data.py --input pmc_papers.jsonl ...
"""
import argparse
import sys

from megapmc.data.jsonl import MalformedLineError
from megapmc.data.medc_k.pipeline import filter_s2orc, filter_s2orc_split


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--input", help="S2ORC JSONL with metadata and body together (.jsonl, .jsonl.gz, .jsonl.zst)")
    p.add_argument("--metadata", help="S2ORC 2020 metadata shard (use with --pdf-parses instead of --input)")
    p.add_argument("--pdf-parses", help="the PDF-parse shard that goes with --metadata")
    p.add_argument("--output", required=True, help="output JSONL (compressed by suffix)")
    p.add_argument("--no-section-headings", action="store_true", help="leave section titles out of the text")
    p.add_argument("--strict", action="store_true", help="stop at the first malformed line")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    if bool(args.input) == bool(args.metadata or args.pdf_parses) or bool(args.metadata) != bool(args.pdf_parses):
        p.error("give either --input, or both --metadata and --pdf-parses")
    try:
        if args.input:
            stats = filter_s2orc(args.input, args.output, section_headings=not args.no_section_headings,
                                 strict=args.strict, progress=not args.no_progress)
        else:
            stats = filter_s2orc_split(args.metadata, args.pdf_parses, args.output,
                                       section_headings=not args.no_section_headings, strict=args.strict,
                                       progress=not args.no_progress)
    except (OSError, MalformedLineError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(stats.format(args.input or args.metadata))
    return 0


if __name__ == "__main__":
    sys.exit(main())
