"""Tokenize JSONL (.jsonl / .jsonl.gz / .jsonl.zst) into Megatron indexed datasets: PREFIX_{key}_document.bin/.idx.

Flags and output names follow Megatron-LM's tools/preprocess_data.py. Example:
    python tools/preprocess_data.py --input books.jsonl --output-prefix data/books \\
        --tokenizer-model tokenizer.model --append-eod --workers 8 --partitions 2
"""
import argparse
import sys

from megapmc.data.preprocess import PreprocessConfig, preprocess


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--input", required=True, help="JSONL file, optionally .gz or .zst compressed")
    p.add_argument("--output-prefix", required=True, help="writes OUTPUT_PREFIX_{key}_document.bin/.idx")
    p.add_argument("--json-keys", nargs="+", default=["text"], help="keys to tokenize, one dataset each")
    p.add_argument("--tokenizer-model", required=True,
                   help="SentencePiece tokenizer.model, Hugging Face tokenizer.json, or a directory holding one")
    p.add_argument("--append-eod", action="store_true", help="append the EOD (EOS) token to every document")
    p.add_argument("--prepend-bos", action="store_true", help="prepend BOS to every document (off, as in Megatron)")
    p.add_argument("--workers", type=int, default=1, help="tokenizer processes (cores)")
    p.add_argument("--partitions", type=int, default=1,
                   help="split the input into this many contiguous parts processed at once, then merge")
    p.add_argument("--strict", action="store_true", help="stop at the first malformed line or missing key")
    p.add_argument("--batch-size", type=int, default=128,
                   help="documents per worker task (a task also ends at 4 MiB of text)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        cfg = PreprocessConfig(
            input=args.input, output_prefix=args.output_prefix, tokenizer_model=args.tokenizer_model,
            json_keys=tuple(args.json_keys), append_eod=args.append_eod, prepend_bos=args.prepend_bos,
            workers=args.workers, partitions=args.partitions, strict=args.strict, batch_size=args.batch_size,
            progress=not args.no_progress,
        )
        summary = preprocess(cfg)
    except (ValueError, OSError) as e:  # PreprocessError, IndexedDatasetError, missing or unwritable files
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(summary.format(cfg.input))
    return 0


if __name__ == "__main__":
    sys.exit(main())
