"""Instruction tuning (PMC-LLaMA stage 2): ``python -m megapmc.finetune`` under torchrun.

The flags are the trainer's (Megatron's names, see ``megapmc.training.arguments``) plus the instruction
data below. ``--data-path`` is the prefix written by ``tools/preprocess_sft.py``. The run starts from a
pretrained or converted checkpoint, either Megatron's way (``--load CKPT --finetune``: weights only) or
resumably (``--pretrained-checkpoint CKPT --load RUN --save RUN``: the weights seed the first start,
later starts resume RUN). ``--global-batch-size`` counts instruction SAMPLES: every step consumes exactly
that many, packed into as few rows of ``--seq-length`` as they need, and ``--micro-batch-size`` counts
rows (memory). ``--train-epochs`` counts passes over the samples: ``ceil(epochs × samples / global batch)``
iterations.
"""
from __future__ import annotations

import argparse
import json
import math
import sys

from megapmc.parallel.state import ParallelState
from megapmc.sft.dataset import SFTDataConfig, SFTDataset, read_metadata, split_samples
from megapmc.sft.loader import build_sft_loader
from megapmc.training.config import RunConfig
from megapmc.training.trainer import TrainData


def add_sft_args(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    g = parser.add_argument_group("instruction data")
    g.add_argument("--data-path", help="prefix of the preprocessed instruction data (tools/preprocess_sft.py)")
    g.add_argument("--packing", action=argparse.BooleanOptionalAction, default=True,
                   help="pack several samples per row with attention kept inside each (default); "
                        "--no-packing pads one sample per row")
    g.add_argument("--min-prompt-tokens", type=int, default=16,
                   help="a prompt cut to fit the row keeps at least this many tokens (BOS + its end)")
    g.add_argument("--valid-fraction", type=float, default=0.0,
                   help="fraction of the samples held out for the validation loss")
    g.add_argument("--num-workers", type=int, default=0,
                   help="data-loader worker processes per rank (0: rows are mmap slices, cheaper in-process)")
    return parser


def sft_data_config(args: argparse.Namespace) -> SFTDataConfig:
    if not args.data_path:
        raise ValueError("--data-path PREFIX is required (the output prefix of tools/preprocess_sft.py)")
    return SFTDataConfig(data_prefix=args.data_path, packing=args.packing, min_prompt_tokens=args.min_prompt_tokens,
                         valid_fraction=args.valid_fraction, num_workers=args.num_workers)


def build_sft_datasets(config: RunConfig, data_parallel_size: int = 1) -> tuple[SFTDataset, SFTDataset | None, int]:
    """The train and validation datasets and the number of iterations of the run.

    A step consumes ``--global-batch-size`` samples, packed into as few rows as they need (padded to a
    multiple of ``data_parallel_size`` rows; each rank runs its share in micro-batches of up to
    ``--micro-batch-size`` rows). With ``--train-epochs E`` the run is
    ``ceil(E × training samples / global batch)`` iterations; the dataset plans epochs until every
    iteration has its samples.
    """
    data: SFTDataConfig = config.data
    tcfg = config.training
    meta = read_metadata(data.data_prefix)
    if meta["vocab_size"] > config.model.vocab_size:
        raise ValueError(f"--data-path {data.data_prefix} was tokenised with {meta['vocab_size']} ids but the "
                         f"model has vocab_size {config.model.vocab_size}; use the same --tokenizer-model")
    train_records, valid_records = split_samples(meta["num_records"], data.valid_fraction, tcfg.seed)
    gbs = tcfg.global_batch_size
    common = dict(seq_length=tcfg.seq_length, seed=tcfg.seed, packing=data.packing, samples_per_step=gbs,
                  rows_multiple=data_parallel_size,
                  min_prompt_tokens=data.min_prompt_tokens, max_open_rows=data.max_open_rows)
    train = SFTDataset(data.data_prefix, records=train_records, num_epochs=1, **common)
    if tcfg.train_iters is not None:
        train_iters = tcfg.train_iters
    else:
        train_iters = max(1, math.ceil(tcfg.train_epochs * len(train_records) / gbs))
    while train.num_steps < train_iters:
        train.add_epoch()
    valid = None
    if len(valid_records):
        valid = SFTDataset(data.data_prefix, records=valid_records, num_epochs=1, **common)
        while valid.num_steps < tcfg.eval_iters:  # evaluation reads eval_iters steps
            valid.add_epoch()
    return train, valid, train_iters


def sft_dataset_provider(config: RunConfig, parallel: ParallelState) -> TrainData:
    train, valid, train_iters = build_sft_datasets(config, parallel.dp_size)
    counts = train.truncation_counts()
    gbs = config.training.global_batch_size
    rows = [train.step_rows(k)[1] - train.step_rows(k)[0] for k in range(train_iters)]
    summary = (f"instruction data {config.data.data_prefix}: {counts['samples']} training samples "
               f"({counts['truncated']} truncated to --seq-length {config.training.seq_length}); "
               f"{train_iters} iterations of {gbs} samples ({train_iters * gbs / counts['samples']:.2f} epochs), "
               f"{'packed' if config.data.packing else 'padded'} into {min(rows)}-{max(rows)} rows per step "
               f"({sum(rows) / len(rows):.1f} on average; up to {config.training.micro_batch_size} per micro-batch "
               f"and rank)" + (f"; {len(valid.records)} validation samples" if valid is not None else ""))
    return TrainData(train_dataset=train, valid_dataset=valid, train_iters=train_iters, summary=summary,
                     num_workers=config.data.num_workers, loader_builder=build_sft_loader, yields_steps=True)


def build_parser() -> argparse.ArgumentParser:
    from megapmc.training.arguments import add_training_args

    parser = argparse.ArgumentParser(prog="python -m megapmc.finetune", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_sft_args(add_training_args(parser))
    parser.add_argument("--dry-run", action="store_true",
                        help="print the resolved config and the instruction-data plan, then exit")
    return parser


def dry_run(config: RunConfig, args: argparse.Namespace) -> str:
    """The resolved configuration and the instruction data's summary, as printed by ``--dry-run``."""
    return "\n".join([json.dumps(config.to_dict(), indent=2, sort_keys=True),
                      sft_dataset_provider(config, ParallelState.single()).summary])


def main(argv: list[str] | None = None) -> int:
    from megapmc.training.launch import run_training

    return run_training("megapmc.finetune", build_parser(), argv, sft_data_config, sft_dataset_provider, dry_run)


if __name__ == "__main__":
    sys.exit(main())
