"""The shared body of the training entry points (``megapmc.pretrain``, ``megapmc.finetune``): flags →
resolved config → ``--dry-run`` report or the training loop, with user errors as one line, not a traceback."""
from __future__ import annotations

import argparse
import sys
from typing import Callable

from megapmc.training.config import RunConfig
from megapmc.training.trainer import DatasetProvider


def run_training(prog: str, parser: argparse.ArgumentParser, argv: list[str] | None,
                 data_config: Callable[[argparse.Namespace], object], dataset_provider: DatasetProvider,
                 dry_run: Callable[[RunConfig, argparse.Namespace], str]) -> int:
    from megapmc.checkpoint.checkpointing import CheckpointError
    from megapmc.kernels import KernelUnavailableError
    from megapmc.training.arguments import build_run_config, parse_args
    from megapmc.training.trainer import TrainingError, train

    args = parse_args(parser, argv)
    try:
        config = build_run_config(args, data_config(args))
        if args.dry_run:
            print(dry_run(config, args))
            return 0
    except (ValueError, FileNotFoundError) as e:
        parser.error(str(e))  # exits 2 with the usage line
    try:
        result = train(config, dataset_provider)
    except (CheckpointError, TrainingError, KernelUnavailableError) as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 1
    if result.exit_reason != "finished":
        print(f"stopped at iteration {result.iteration} ({result.exit_reason}); rerun the same command to resume")
    return 0
