"""Command-line flags (Megatron-LM's names and meanings) → ``RunConfig``.

``add_training_args(parser)`` adds the flags shared by pretraining and instruction tuning (model,
parallelism, optimizer, schedule, loop, checkpoints, logging); each entry point adds its data flags.
``parse_args(parser, argv)`` also reads ``--config FILE.yaml`` (keys are flag names, with dashes or
underscores); flags on the command line win over the file. ``build_run_config(args, data_config)``
validates everything and turns a bad value or combination into one ``parser.error`` that says what to
change.
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path

from megapmc.kernels.registry import ATTENTION_BACKENDS, KERNEL_BACKENDS
from megapmc.model.config import PRESETS, LlamaConfig
from megapmc.model.recompute import METHODS as RECOMPUTE_METHODS
from megapmc.optim.lr_schedule import DECAY_STYLES, LRScheduleConfig
from megapmc.training.config import CheckpointConfig, LoggingConfig, RunConfig, TrainingConfig

RECOMPUTE_CHOICES = ("none", "selective", "full")

# Model-shape flags (Megatron's names) → LlamaConfig fields; None keeps the preset's value.
MODEL_OVERRIDES = {
    "num_layers": "num_layers",
    "hidden_size": "hidden_size",
    "num_attention_heads": "num_attention_heads",
    "num_query_groups": "num_key_value_heads",
    "ffn_hidden_size": "ffn_hidden_size",
    "vocab_size": "vocab_size",
    "make_vocab_size_divisible_by": "make_vocab_size_divisible_by",
    "max_position_embeddings": "max_position_embeddings",
    "norm_epsilon": "rms_norm_eps",
    "rotary_base": "rope_theta",
    "init_method_std": "init_method_std",
}


def add_training_args(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("--config", metavar="FILE.yaml", help="flags as YAML keys; command-line flags win")

    g = parser.add_argument_group("model")
    g.add_argument("--model", default=None, choices=sorted(PRESETS), help="model preset (shape)")
    g.add_argument("--num-layers", type=int)
    g.add_argument("--hidden-size", type=int)
    g.add_argument("--num-attention-heads", type=int)
    g.add_argument("--num-query-groups", type=int, help="key/value heads (grouped-query attention)")
    g.add_argument("--ffn-hidden-size", type=int)
    g.add_argument("--vocab-size", type=int, help="default: the tokenizer's vocabulary")
    g.add_argument("--make-vocab-size-divisible-by", type=int)
    g.add_argument("--max-position-embeddings", type=int)
    g.add_argument("--norm-epsilon", type=float)
    g.add_argument("--rotary-base", type=float)
    g.add_argument("--init-method-std", type=float)
    g.add_argument("--tokenizer-model", help="SentencePiece tokenizer.model, tokenizer.json or an HF directory")
    g.add_argument("--recompute-granularity", choices=RECOMPUTE_CHOICES, default="none",
                   help="activation checkpointing: selective (attention core) or full (each layer)")
    g.add_argument("--recompute-method", choices=RECOMPUTE_METHODS,
                   help="with --recompute-granularity full (default uniform): uniform recomputes chunks of --recompute-num-layers "
                        "layers; block recomputes only the first --recompute-num-layers layers")
    g.add_argument("--recompute-num-layers", type=int,
                   help="layers per recomputed chunk (uniform) or layers recomputed (block); default 1")
    g.add_argument("--attention-backend", default="auto", choices=ATTENTION_BACKENDS,
                   help="attention core; auto: flash-attn when installed on CUDA, else PyTorch SDPA")
    g.add_argument("--kernel-backend", default="auto", choices=KERNEL_BACKENDS,
                   help="RMSNorm / SwiGLU / RoPE / cross-entropy kernels; auto: the best installed per op")

    g = parser.add_argument_group("parallelism")
    g.add_argument("--tensor-model-parallel-size", type=int, default=1)
    g.add_argument("--sequence-parallel", action="store_true")
    g.add_argument("--pipeline-model-parallel-size", type=int, default=1,
                   help="pipeline stages; DP = world / (TP x PP)")
    g.add_argument("--num-layers-per-virtual-pipeline-stage", type=int,
                   help="layers per model chunk: the interleaved 1F1B schedule with L / (PP x N) chunks per stage")
    g.add_argument("--decoder-first-pipeline-num-layers", type=int,
                   help="decoder layers of the first stage (which also holds the embedding); default: an even split")
    g.add_argument("--decoder-last-pipeline-num-layers", type=int,
                   help="decoder layers of the last stage (which also holds the output layer and the loss)")
    g.add_argument("--use-distributed-optimizer", action="store_true",
                   help="shard fp32 master weights and Adam states across data-parallel ranks (ZeRO-1)")
    g.add_argument("--overlap-grad-reduce", action=argparse.BooleanOptionalAction, default=True)
    g.add_argument("--overlap-param-gather", action="store_true",
                   help="with --use-distributed-optimizer: leave the parameter all-gather running after the "
                        "step, each layer's forward waits for its own bucket")
    g.add_argument("--ddp-bucket-size", type=int, default=40_000_000)

    g = parser.add_argument_group("batch and run length")
    g.add_argument("--micro-batch-size", type=int, default=1)
    g.add_argument("--global-batch-size", type=int, help="gradient accumulation = GBS / (MBS × DP)")
    g.add_argument("--seq-length", type=int)
    g.add_argument("--train-iters", type=int)
    g.add_argument("--train-epochs", type=float, help="epochs of the data's epoch source")
    g.add_argument("--seed", type=int, default=1234)
    g.add_argument("--bf16", action="store_true")

    g = parser.add_argument_group("optimizer and learning rate")
    g.add_argument("--lr", type=float)
    g.add_argument("--min-lr", type=float, default=0.0)
    g.add_argument("--lr-decay-style", choices=DECAY_STYLES, default="cosine")
    g.add_argument("--lr-warmup-iters", type=int, default=0)
    g.add_argument("--lr-warmup-fraction", type=float)
    g.add_argument("--lr-decay-iters", type=int, help="default: --train-iters")
    g.add_argument("--weight-decay", type=float, default=0.0)
    g.add_argument("--adam-beta1", type=float, default=0.9)
    g.add_argument("--adam-beta2", type=float, default=0.95)
    g.add_argument("--adam-eps", type=float, default=1e-8)
    g.add_argument("--clip-grad", type=float, default=1.0)
    g.add_argument("--max-consecutive-skipped-iters", type=int, default=10,
                   help="stop after this many NaN/Inf iterations in a row")

    g = parser.add_argument_group("evaluation")
    g.add_argument("--eval-interval", type=int, default=1000, help="0 disables validation")
    g.add_argument("--eval-iters", type=int, default=10)

    g = parser.add_argument_group("checkpoints")
    g.add_argument("--save", help="run directory for checkpoints and metrics.jsonl")
    g.add_argument("--load", help="run directory to resume from (or one checkpoint directory)")
    g.add_argument("--pretrained-checkpoint", help="weights to start from when --load has nothing to resume")
    g.add_argument("--save-interval", type=int)
    g.add_argument("--keep-last-checkpoints", type=int, help="delete all but the newest K checkpoints")
    g.add_argument("--finetune", action="store_true",
                   help="load only the weights from --load (iteration, optimizer, RNG start afresh)")
    g.add_argument("--no-load-optim", action="store_true")
    g.add_argument("--no-load-rng", action="store_true")
    g.add_argument("--ckpt-step", type=int, help="resume iteration N of --load (instead of the tracker's)")
    g.add_argument("--fallback-to-intact-checkpoint", action="store_true",
                   help="if the checkpoint to resume is damaged, resume the newest intact older one")
    g.add_argument("--verify-checkpoint", choices=("full", "metadata", "off"), default="full",
                   help="on load, check every file's size, header and checksum (full), or sizes and headers "
                        "only (metadata)")
    g.add_argument("--exit-interval", type=int, help="save and exit when iteration %% N == 0")
    g.add_argument("--exit-duration-in-mins", type=float,
                   help="save and exit once the run has lasted this long (a job's time limit)")
    g.add_argument("--no-exit-signal-handler", action="store_true",
                   help="do not turn SIGTERM/SIGUSR1 into save-and-exit")

    g = parser.add_argument_group("logging")
    g.add_argument("--log-interval", type=int, default=100)
    g.add_argument("--tensorboard-dir")
    g.add_argument("--device-peak-tflops", type=float, help="per-device peak for MFU (default: by device name)")
    g.add_argument("--no-progress-bar", action="store_true")
    return parser


def _load_yaml(parser: argparse.ArgumentParser, path: str) -> dict:
    import yaml

    file = Path(path)
    if not file.is_file():
        parser.error(f"--config {path}: no such file")
    try:
        values = yaml.safe_load(file.read_text()) or {}
    except yaml.YAMLError as e:
        parser.error(f"--config {path}: not valid YAML: {e}")
    if not isinstance(values, dict):
        parser.error(f"--config {path}: expected a mapping of flag names to values")
    dests = {a.dest for a in parser._actions}
    out = {}
    for key, value in values.items():
        dest = str(key).lstrip("-").replace("-", "_")
        if dest not in dests or dest == "config":
            parser.error(f"--config {path}: unknown key '{key}' (there is no flag --{dest.replace('_', '-')})")
        out[dest] = value
    return out


def parse_args(parser: argparse.ArgumentParser, argv: list[str] | None = None) -> argparse.Namespace:
    """Parse flags, with ``--config`` YAML values as defaults that explicit flags override."""
    pre, _ = parser.parse_known_args(argv)
    if getattr(pre, "config", None):
        parser.set_defaults(**_load_yaml(parser, pre.config))
    return parser.parse_args(argv)


def _model_config(args: argparse.Namespace) -> LlamaConfig:
    overrides = {field: getattr(args, flag) for flag, field in MODEL_OVERRIDES.items()
                 if getattr(args, flag, None) is not None}
    if args.vocab_size is None and args.tokenizer_model:
        from megapmc.data.tokenizer import build_tokenizer

        overrides["vocab_size"] = build_tokenizer(args.tokenizer_model).vocab_size
    if args.model is None:
        needed = ["num_layers", "hidden_size", "num_attention_heads", "ffn_hidden_size"]
        missing = [f"--{n.replace('_', '-')}" for n in needed if n not in overrides]
        if missing:
            raise ValueError(f"give --model PRESET (one of {', '.join(PRESETS)}) or all of {', '.join(missing)}")
        return LlamaConfig(**overrides)
    return LlamaConfig.from_name(args.model, **overrides)


def _model_options(args: argparse.Namespace):
    from megapmc.model.llama import TransformerOptions

    full = args.recompute_granularity == "full"
    if not full and (args.recompute_method is not None or args.recompute_num_layers is not None):
        raise ValueError("--recompute-method and --recompute-num-layers choose which whole layers are recomputed: "
                         "they need --recompute-granularity full")
    return TransformerOptions(
        sequence_parallel=args.sequence_parallel,
        recompute_granularity=None if args.recompute_granularity == "none" else args.recompute_granularity,
        recompute_method=args.recompute_method or "uniform",
        recompute_num_layers=1 if args.recompute_num_layers is None else args.recompute_num_layers,
        attention_backend=args.attention_backend,
        kernel_backend=args.kernel_backend,
    )


def _check_world(config: RunConfig) -> None:
    """Under torchrun the data-parallel size is known now: check the batch arithmetic (and the interleaved
    schedule's micro-batch count) before any work."""
    from megapmc.pipeline_parallel.schedules import check_num_micro_batches

    world = os.environ.get("WORLD_SIZE")
    if world is None:
        return
    world, tp, pp = int(world), config.tensor_model_parallel_size, config.pipeline.pipeline_model_parallel_size
    if world % (tp * pp):
        sizes = f"--tensor-model-parallel-size {tp}" + (f" x --pipeline-model-parallel-size {pp}" if pp > 1 else "")
        raise ValueError(f"{sizes} does not divide the {world} launched processes; launch a multiple of "
                         f"{tp * pp} processes or change the model-parallel sizes")
    check_num_micro_batches(config.pipeline, config.model.num_layers,
                            config.training.num_micro_batches(world // (tp * pp)))


def build_run_config(args: argparse.Namespace, data_config) -> RunConfig:
    """Validated RunConfig from parsed flags; raises ValueError with a message naming the flag to change."""
    from megapmc.optim.config import OptimizerConfig
    from megapmc.pipeline_parallel.config import PipelineConfig

    if args.lr is None:
        raise ValueError("--lr is required (the paper's stage 1 uses 2e-5)")
    if args.seq_length is None:
        raise ValueError("--seq-length is required")
    if args.global_batch_size is None:
        raise ValueError("--global-batch-size is required")
    if args.sequence_parallel and args.tensor_model_parallel_size == 1:
        raise ValueError("--sequence-parallel splits activations across tensor-parallel ranks: it needs "
                         "--tensor-model-parallel-size > 1 (drop the flag or raise the TP size)")
    training = TrainingConfig(
        micro_batch_size=args.micro_batch_size, global_batch_size=args.global_batch_size,
        seq_length=args.seq_length, train_iters=args.train_iters, train_epochs=args.train_epochs, seed=args.seed,
        bf16=args.bf16, eval_interval=args.eval_interval, eval_iters=args.eval_iters,
        max_consecutive_skipped_iters=args.max_consecutive_skipped_iters,
        exit_signal_handler=not args.no_exit_signal_handler, exit_interval=args.exit_interval,
        exit_duration_in_mins=args.exit_duration_in_mins,
    )
    optimizer = OptimizerConfig(
        lr=args.lr, min_lr=args.min_lr, weight_decay=args.weight_decay, adam_beta1=args.adam_beta1,
        adam_beta2=args.adam_beta2, adam_eps=args.adam_eps, clip_grad=args.clip_grad, bf16=args.bf16,
        use_distributed_optimizer=args.use_distributed_optimizer, overlap_grad_reduce=args.overlap_grad_reduce,
        overlap_param_gather=args.overlap_param_gather, bucket_size=args.ddp_bucket_size,
    )
    schedule = LRScheduleConfig(
        lr=args.lr, min_lr=args.min_lr, lr_decay_style=args.lr_decay_style, lr_warmup_iters=args.lr_warmup_iters,
        lr_warmup_fraction=args.lr_warmup_fraction, lr_decay_iters=args.lr_decay_iters,
    )
    if args.train_iters is not None:
        schedule.resolve(args.train_iters)  # validates the warmup against the run length now
    checkpoint = CheckpointConfig(
        save=args.save, load=args.load, pretrained_checkpoint=args.pretrained_checkpoint,
        save_interval=args.save_interval, keep_last=args.keep_last_checkpoints, finetune=args.finetune,
        no_load_optim=args.no_load_optim, no_load_rng=args.no_load_rng, ckpt_step=args.ckpt_step,
        fallback_to_intact_checkpoint=args.fallback_to_intact_checkpoint, verify_checkpoint=args.verify_checkpoint,
    )
    logging = LoggingConfig(
        log_interval=args.log_interval, tensorboard_dir=args.tensorboard_dir,
        device_peak_tflops=args.device_peak_tflops, progress_bar=not args.no_progress_bar,
    )
    config = RunConfig(
        model=_model_config(args), model_options=_model_options(args), optimizer=optimizer, data=data_config,
        lr_schedule=schedule, training=training, checkpoint=checkpoint, logging=logging,
        tensor_model_parallel_size=args.tensor_model_parallel_size, tokenizer_model=args.tokenizer_model,
        pipeline=PipelineConfig(
            pipeline_model_parallel_size=args.pipeline_model_parallel_size,
            num_layers_per_virtual_pipeline_stage=args.num_layers_per_virtual_pipeline_stage,
            decoder_first_pipeline_num_layers=args.decoder_first_pipeline_num_layers,
            decoder_last_pipeline_num_layers=args.decoder_last_pipeline_num_layers),
    )
    _check_world(config)
    return config
