"""Continued pretraining (PMC-LLaMA stage 1): ``python -m megapmc.pretrain`` under torchrun.

Flags are Megatron-LM's (``--tensor-model-parallel-size``, ``--micro-batch-size``,
``--global-batch-size``, ``--data-path 15 BOOKS 4 PAPERS 1 GENERAL`` ...; ``--help`` lists them) and may
come from ``--config FILE.yaml``. ``--dry-run`` prints the resolved configuration, the data plan and
the per-GPU memory estimate, then exits without touching a GPU. See examples/pretrain_pmc_13b.sh.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

from megapmc.parallel.state import ParallelState
from megapmc.training.config import RunConfig
from megapmc.training.trainer import TrainData


def add_pretrain_args(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    from megapmc.data.config import add_data_args

    g = add_data_args(parser)
    g.add_argument("--num-workers", type=int, default=0,
                   help="data-loader worker processes per rank (0: the C++ gather in the training process is faster)")
    g = parser.add_argument_group("dry run")
    g.add_argument("--dry-run", action="store_true",
                   help="print the resolved config, the data plan and the memory estimate, then exit")
    g.add_argument("--world-size", type=int,
                   help="--dry-run: processes the real run will have (default: $WORLD_SIZE or 1)")
    return parser


def build_parser() -> argparse.ArgumentParser:
    from megapmc.training.arguments import add_training_args

    parser = argparse.ArgumentParser(prog="python -m megapmc.pretrain", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    return add_pretrain_args(add_training_args(parser))


def data_config(args: argparse.Namespace):
    """The DataConfig of the flags; a missing shard stops here, before any process group exists."""
    from megapmc.data.config import DataConfig

    if not args.data_path:
        raise ValueError("--data-path is required: an indexed-dataset prefix (tools/preprocess_data.py), or "
                         "'15 BOOKS 4 PAPERS 1 GENERAL' for the paper's mixture")
    config = DataConfig(
        data_path=args.data_path, split=args.split, valid_data_path=args.valid_data_path,
        test_data_path=args.test_data_path, epoch_source=args.epoch_source,
        micro_batch_size=args.micro_batch_size, num_workers=args.num_workers, cache_dir=args.data_cache_path,
        # Validation reads the same eval_iters global batches every time (comparable numbers).
        eval_samples=args.eval_iters * args.global_batch_size if args.global_batch_size else None,
    )
    for flag, sources in (("--data-path", config.sources), ("--valid-data-path", config.valid_sources),
                          ("--test-data-path", config.test_sources)):
        for source in sources:
            _require_shard(flag, source)
    return config


def _require_shard(flag: str, source) -> None:
    missing = [p for p in (source.prefix + ".bin", source.prefix + ".idx") if not os.path.isfile(p)]
    if missing:
        raise FileNotFoundError(
            f"{flag} source {source.name!r}: {', '.join(missing)} not found; write it with "
            f"tools/preprocess_data.py --output-prefix ... (give the prefix, without .bin/.idx)")


def pretraining_dataset_provider(config: RunConfig, parallel: ParallelState) -> TrainData:
    from megapmc.data.blended_dataset import build_pretraining_datasets

    tcfg = config.training
    train_samples = tcfg.train_iters * tcfg.global_batch_size if tcfg.train_iters is not None else None
    train_ds, valid_ds, _, plan = build_pretraining_datasets(  # prints the data plan on the first rank
        config.data, tcfg.seq_length, tcfg.global_batch_size, train_samples, tcfg.train_epochs, tcfg.seed,
        parallel,
    )
    return TrainData(train_dataset=train_ds, valid_dataset=valid_ds, train_iters=plan.train_iters,
                     num_workers=config.data.num_workers)


def data_plan(config: RunConfig):
    """The run's data plan from the shards' token counts alone (no sample indices built)."""
    from megapmc.data.blended_dataset import plan_from_config

    data, tcfg = config.data, config.training
    if data.manifest is not None:
        return f"materialised stream {data.manifest}: its plan is in the manifest (tools/inspect_shards.py)"
    train_samples = tcfg.train_iters * tcfg.global_batch_size if tcfg.train_iters is not None else None
    return plan_from_config(data, tcfg.seq_length, tcfg.global_batch_size, train_samples=train_samples,
                            train_epochs=tcfg.train_epochs)


def dry_run(config: RunConfig, world_size: int) -> str:
    """The resolved configuration, the data plan and the memory estimate, as printed by ``--dry-run``."""
    from megapmc.model.memory import estimate_memory, layouts_for

    tp, pp = config.tensor_model_parallel_size, config.pipeline.pipeline_model_parallel_size
    if world_size % (tp * pp):
        raise ValueError(f"--world-size {world_size} is not a multiple of --tensor-model-parallel-size {tp}"
                         + (f" x --pipeline-model-parallel-size {pp}" if pp > 1 else ""))
    dp = world_size // (tp * pp)
    micro_batches = config.training.num_micro_batches(dp)
    plan = data_plan(config)
    tcfg = config.training
    estimate = estimate_memory(config.model, tp, dp, tcfg.micro_batch_size, tcfg.seq_length, config.model_options,
                               config.optimizer, config.pipeline, micro_batches)
    layouts = layouts_for(config.model, world_size, tcfg.micro_batch_size, tcfg.seq_length, config.model_options,
                          config.optimizer, pipeline_sizes=(1,) if pp == 1 else (1, 2, 4, 8),
                          global_batch_size=tcfg.global_batch_size)
    return "\n".join([
        "# resolved configuration", json.dumps(config.to_dict(), indent=2, sort_keys=True),
        f"\n# layout: {world_size} processes = TP {tp} x DP {dp}" + (f" x PP {pp}" if pp > 1 else "")
        + f"; {micro_batches} micro-batches of {tcfg.micro_batch_size} per rank per iteration",
        "\n# data plan", plan if isinstance(plan, str) else plan.table(),
        "\n# memory estimate per GPU" + (" (the fullest pipeline stage)" if pp > 1 else ""),
        str(estimate),
        f"\n# other layouts of {world_size} GPUs (80 GiB, 10% reserve)",
        *(f"TP {e.tensor_model_parallel_size} x DP {e.data_parallel_size}"
          + (f" x PP {e.pipeline_model_parallel_size}" if e.pipeline_model_parallel_size > 1 else "")
          + f": {e.total / 2**30:.1f} GiB{'' if e.fits(80.0) else '  (does not fit)'}" for e in layouts),
    ])


def main(argv: list[str] | None = None) -> int:
    from megapmc.training.launch import run_training

    return run_training(
        "megapmc.pretrain", build_parser(), argv, data_config, pretraining_dataset_provider,
        lambda config, args: dry_run(config, args.world_size or int(os.environ.get("WORLD_SIZE", 1))),
    )


if __name__ == "__main__":
    sys.exit(main())
