#!/usr/bin/env python
"""Write a run's blended training stream (e.g. books:papers:general 15:4:1) once, as Megatron shards.

    python tools/build_blended_shards.py --data-path 15 BOOKS 4 PAPERS 1 GENERAL --seq-length 2048 \\
        --global-batch-size 3200 --train-epochs 5 --seed 1234 --output-prefix OUT --shard-size-gb 4

Writes OUT_00000.bin/.idx/.sources.npy, ... and OUT.manifest.json. Training with --data-path OUT (or the
manifest) then reads exactly the samples of the live blend, in the same order. An interrupted build
resumes after its last complete shard when re-run with the same flags.
"""
import argparse
import sys

from megapmc.data.blended_dataset import build_pretraining_datasets
from megapmc.data.config import add_data_args, add_run_shape_args, data_config_from_args, train_samples_from_args
from megapmc.data.materialize import build_blended_shards
from megapmc.parallel.state import ParallelState


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_data_args(parser)
    add_run_shape_args(parser)
    parser.add_argument("--output-prefix", required=True)
    parser.add_argument("--shard-size-gb", type=float, default=4.0, help="target size of one shard's .bin")
    args = parser.parse_args(argv)
    if not args.data_path:
        parser.error("--data-path is required")
    if args.shard_size_gb <= 0:
        parser.error(f"--shard-size-gb must be positive, got {args.shard_size_gb}")
    config = data_config_from_args(args)
    if config.valid_data_path or config.test_data_path:
        # Held-out shards are read as they are; only the blended training stream is worth materialising.
        print("note: --valid-data-path/--test-data-path are not written here; pass them to the training run "
              "beside --data-path OUT", file=sys.stderr)
    train_samples = train_samples_from_args(args)
    train, _, _, plan = build_pretraining_datasets(config, None, args.global_batch_size, train_samples,
                                                   args.train_epochs, None, ParallelState.single())
    settings = {
        "data_path": config.data_path, "split": config.split, "seq_length": args.seq_length,
        "global_batch_size": args.global_batch_size, "micro_batch_size": args.micro_batch_size,
        "seed": args.seed, "epoch_source": plan.epoch_source, "train_epochs": args.train_epochs,
        "train_iters": plan.train_iters, "train_samples": plan.train_samples,
    }
    manifest = build_blended_shards(train, args.output_prefix, int(args.shard_size_gb * (1 << 30)), settings, plan)
    print(f"wrote {manifest}")


if __name__ == "__main__":
    try:
        main()
    except (ValueError, FileNotFoundError) as e:  # bad flags or data: the message says what to do
        sys.exit(f"error: {e}")
