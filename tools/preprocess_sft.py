#!/usr/bin/env python
"""Tokenise instruction JSONL for instruction tuning: PREFIX_tokens + PREFIX_loss_mask indexed datasets.

    python tools/preprocess_sft.py --input medc_i.jsonl --tokenizer-model tokenizer.model \\
        --output-prefix data/medc_i [--redraw-epochs 3] [--workers 8]

Each record becomes BOS + the Alpaca prompt + the response + EOS, with the loss mask on the response and
EOS only (megapmc/sft/preprocess.py). Truncation and packing to --seq-length happen at training time
(python -m megapmc.finetune --data-path data/medc_i). --redraw-epochs N stores N drawings of every
pooled instruction (OUT.jsonl.pools.json from tools/build_instruction_data.py), one per epoch.
"""
from __future__ import annotations

import argparse
import sys

from megapmc.sft.preprocess import PreprocessConfig, preprocess_sft
from megapmc.sft.sources.common import BadRecordError


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--input", required=True, help="instruction JSONL (instruction, input, output[, id])")
    p.add_argument("--tokenizer-model", required=True, help="SentencePiece .model, tokenizer.json or HF directory")
    p.add_argument("--output-prefix", required=True)
    p.add_argument("--redraw-epochs", type=int, default=1, help="drawings of pooled instructions")
    p.add_argument("--instruction-pools", help="default: INPUT.pools.json")
    p.add_argument("--seed", type=int, default=1234, help="the build's seed, so drawing 0 is the build's")
    p.add_argument("--workers", type=int, default=1, help="tokeniser threads")
    p.add_argument("--strict", action="store_true", help="stop at the first bad record")
    p.add_argument("--no-progress-bar", action="store_true")
    args = p.parse_args(argv)
    try:
        config = PreprocessConfig(input=args.input, output_prefix=args.output_prefix,
                                  redraw_epochs=args.redraw_epochs, instruction_pools=args.instruction_pools,
                                  seed=args.seed, workers=args.workers, strict=args.strict)
    except (ValueError, FileNotFoundError) as e:
        p.error(str(e))
    from megapmc.data.tokenizer import build_tokenizer

    try:
        summary = preprocess_sft(config, build_tokenizer(args.tokenizer_model), progress=not args.no_progress_bar)
    except (BadRecordError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"{summary.records} records → {summary.samples} samples ({summary.redrawn_samples} redrawn), "
          f"{summary.tokens} tokens of which {summary.response_tokens} response; length max {summary.max_length}, "
          f"{summary.length_percentiles}")
    if summary.separately_encoded:
        print(f"{summary.separately_encoded} samples: a token spans the prompt/response boundary, so their response "
              f"was encoded on its own (the prompt keeps the ids generation feeds)")
    if summary.bad_records:
        print(f"{summary.bad_records} bad records skipped, e.g.:\n" + "\n".join(f"  {m}" for m in summary.problems))
    return 0


if __name__ == "__main__":
    sys.exit(main())
