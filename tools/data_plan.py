#!/usr/bin/env python
"""Print the data plan of a blended run: per source its tokens, samples per global batch, and the tokens,
epochs and repeats it contributes over the run.

    python tools/data_plan.py --data-path 15 BOOKS 4 PAPERS 1 GENERAL --seq-length 2048 \\
        --global-batch-size 3200 --train-epochs 5
    python tools/data_plan.py --tokens-per-source 4e9,75e9,1.2e12 --seq-length 2048 \\
        --global-batch-size 3200 --train-epochs 5 --json      # plan before any data exists
"""
import argparse
import json
import sys

from megapmc.data.blended_dataset import plan_from_config
from megapmc.data.config import (add_data_args, add_run_shape_args, data_config_from_args, resolve_source,
                                 train_samples_from_args)
from megapmc.data.data_plan import make_plan

PAPER_NAMES = ["books", "papers", "general"]
PAPER_WEIGHTS = [15.0, 4.0, 1.0]


def _floats(text: str, flag: str) -> list[float]:
    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        sys.exit(f"{flag} {text!r}: expected comma-separated numbers")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_data_args(parser)
    add_run_shape_args(parser)
    parser.add_argument("--tokens-per-source", help="plan from token counts, e.g. 4e9,75e9,1.2e12 (no data needed)")
    parser.add_argument("--weights", help="weights for --tokens-per-source (default 15,4,1 for three sources)")
    parser.add_argument("--names", help="names for --tokens-per-source (default books,papers,general for three)")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    args = parser.parse_args(argv)
    train_samples = train_samples_from_args(args)
    if args.tokens_per_source:
        if args.data_path:
            parser.error("give --data-path or --tokens-per-source, not both")
        tokens = [int(t) for t in _floats(args.tokens_per_source, "--tokens-per-source")]
        k = len(tokens)
        weights = _floats(args.weights, "--weights") if args.weights else (PAPER_WEIGHTS if k == 3 else [1.0] * k)
        names = args.names.split(",") if args.names else (PAPER_NAMES if k == 3 else [f"source{i}" for i in range(k)])
        if not len(weights) == len(names) == k:
            parser.error(f"--tokens-per-source has {k} entries, --weights {len(weights)}, --names {len(names)}")
        plan = make_plan(names, weights, tokens, args.seq_length, args.global_batch_size,
                         train_samples=train_samples, train_epochs=args.train_epochs,
                         epoch_source=resolve_source(args.epoch_source, names),
                         micro_batch_size=args.micro_batch_size)
    elif args.data_path:
        plan = plan_from_config(data_config_from_args(args), args.seq_length, args.global_batch_size,
                                train_samples=train_samples, train_epochs=args.train_epochs)
    else:
        parser.error("give --data-path W1 P1 W2 P2 ... or --tokens-per-source T1,T2,...")
    print(json.dumps(plan.to_dict(), indent=1) if args.json else plan.table())


if __name__ == "__main__":
    try:
        main()
    except (ValueError, FileNotFoundError) as e:  # bad flags or data: the message says what to do
        sys.exit(f"error: {e}")
