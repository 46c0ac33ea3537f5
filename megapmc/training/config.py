"""Typed configuration of a training run: one dataclass per concern, validated when built.

``RunConfig`` gathers the model shape, the model options, the optimizer, the data, the schedule, the
loop, checkpointing and logging. ``megapmc.training.arguments`` builds it from flags; its
``to_dict()`` is the resolved config saved in every checkpoint (``config.json``) and printed by
``--dry-run``.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from megapmc.data.config import DataConfig
from megapmc.model.config import LlamaConfig
from megapmc.model.llama import TransformerOptions
from megapmc.optim.config import OptimizerConfig
from megapmc.optim.lr_schedule import LRScheduleConfig
from megapmc.sft.dataset import SFTDataConfig
from megapmc.pipeline_parallel.config import PipelineConfig


@dataclass
class TrainingConfig:
    """The loop: batch geometry, run length, evaluation cadence, failure handling."""

    micro_batch_size: int = 1
    global_batch_size: int = 1
    seq_length: int = 2048
    train_iters: int | None = None
    train_epochs: float | None = None  # epochs of the data's epoch source; the data plan gives the iterations
    seed: int = 1234
    bf16: bool = False
    eval_interval: int = 1000
    eval_iters: int = 10
    max_consecutive_skipped_iters: int = 10  # NaN/Inf steps in a row before the run stops
    exit_signal_handler: bool = True  # SIGTERM/SIGUSR1: save a checkpoint and exit 0
    exit_interval: int | None = None  # stop (after saving) when iteration % exit_interval == 0
    exit_duration_in_mins: float | None = None  # stop (after saving) once the run has lasted this long

    def __post_init__(self):
        for name in ("micro_batch_size", "global_batch_size", "seq_length", "eval_iters"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")
        if self.eval_interval < 0:
            raise ValueError(f"--eval-interval must be >= 0 (0 disables evaluation), got {self.eval_interval}")
        if (self.train_iters is None) == (self.train_epochs is None):
            raise ValueError("give exactly one of --train-iters and --train-epochs")
        if self.train_iters is not None and self.train_iters < 1:
            raise ValueError(f"--train-iters must be >= 1, got {self.train_iters}")
        if self.train_epochs is not None and self.train_epochs <= 0:
            raise ValueError(f"--train-epochs must be positive, got {self.train_epochs}")
        if self.global_batch_size % self.micro_batch_size:
            raise ValueError(
                f"--global-batch-size {self.global_batch_size} is not a multiple of --micro-batch-size "
                f"{self.micro_batch_size}; choose a global batch size divisible by the micro-batch size"
            )
        if self.max_consecutive_skipped_iters < 1:
            raise ValueError("--max-consecutive-skipped-iters must be >= 1")
        if self.exit_interval is not None and self.exit_interval < 1:
            raise ValueError(f"--exit-interval must be >= 1, got {self.exit_interval}")
        if self.exit_duration_in_mins is not None and self.exit_duration_in_mins <= 0:
            raise ValueError(f"--exit-duration-in-mins must be positive, got {self.exit_duration_in_mins}")

    def num_micro_batches(self, data_parallel_size: int) -> int:
        """Gradient-accumulation steps per iteration: global batch / (micro-batch × DP)."""
        per_step = self.micro_batch_size * data_parallel_size
        if self.global_batch_size % per_step:
            raise ValueError(
                f"--global-batch-size {self.global_batch_size} is not divisible by --micro-batch-size "
                f"{self.micro_batch_size} × data-parallel size {data_parallel_size} = {per_step}; "
                f"choose a global batch size that is a multiple of {per_step} (or change the micro-batch "
                f"size or the number of processes)"
            )
        return self.global_batch_size // per_step


@dataclass
class CheckpointConfig:
    save: str | None = None  # run directory: iter_XXXXXXX/, the tracker, metrics.jsonl
    load: str | None = None  # run directory (resumed from its tracker) or one checkpoint directory
    pretrained_checkpoint: str | None = None  # weights to start from when --load has nothing to resume
    save_interval: int | None = None
    keep_last: int | None = None  # keep only the newest K checkpoints; None keeps all
    finetune: bool = False  # --load's weights only: iteration, optimizer, RNG and data position start afresh
    no_load_optim: bool = False
    no_load_rng: bool = False
    ckpt_step: int | None = None  # resume this iteration of --load instead of the tracker's
    fallback_to_intact_checkpoint: bool = False  # a damaged checkpoint: resume the newest intact older one
    verify_checkpoint: str = "full"  # full (sizes, headers, checksums), metadata (no checksums), off

    def __post_init__(self):
        if self.verify_checkpoint not in ("full", "metadata", "off"):
            raise ValueError(f"--verify-checkpoint must be full, metadata or off, got {self.verify_checkpoint!r}")
        if self.ckpt_step is not None and (self.load is None or self.ckpt_step < 0):
            raise ValueError("--ckpt-step N resumes iteration N of --load DIR: give --load and N >= 0")
        if self.save_interval is not None and self.save_interval < 1:
            raise ValueError(f"--save-interval must be >= 1, got {self.save_interval}")
        if self.save_interval is not None and self.save is None:
            raise ValueError("--save-interval needs --save DIR to write checkpoints into")
        if self.keep_last is not None and self.keep_last < 1:
            raise ValueError(f"--keep-last-checkpoints must be >= 1, got {self.keep_last}")
        if self.finetune and self.load is None:
            raise ValueError("--finetune loads weights from --load DIR: give --load")


@dataclass
class LoggingConfig:
    log_interval: int = 100
    tensorboard_dir: str | None = None
    device_peak_tflops: float | None = None  # per-device peak for MFU; None: looked up from the device name
    progress_bar: bool = True  # a tqdm bar on a terminal; plain progress lines when output is not one
    progress_interval_s: float = 30.0  # seconds between plain progress lines (output not a terminal)

    def __post_init__(self):
        if self.progress_interval_s < 0:
            raise ValueError(f"progress_interval_s must be >= 0, got {self.progress_interval_s}")
        if self.log_interval < 1:
            raise ValueError(f"--log-interval must be >= 1, got {self.log_interval}")
        if self.device_peak_tflops is not None and self.device_peak_tflops <= 0:
            raise ValueError(f"--device-peak-tflops must be positive, got {self.device_peak_tflops}")


@dataclass
class RunConfig:
    """Everything a run needs; ``data`` is pretraining's ``DataConfig``, instruction tuning's
    ``SFTDataConfig``, or ``None`` for a run whose dataset provider needs no configuration."""

    model: LlamaConfig
    model_options: TransformerOptions
    optimizer: OptimizerConfig
    data: DataConfig | SFTDataConfig | None
    lr_schedule: LRScheduleConfig
    training: TrainingConfig
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    tensor_model_parallel_size: int = 1
    tokenizer_model: str | None = None
    pipeline: PipelineConfig = field(default_factory=PipelineConfig)

    def __post_init__(self):
        if self.tensor_model_parallel_size < 1:
            raise ValueError(f"--tensor-model-parallel-size must be >= 1, got {self.tensor_model_parallel_size}")
        self.model.check_tensor_parallel(self.tensor_model_parallel_size)
        self.pipeline.stage_layers(self.model.num_layers)  # raises now if the layers do not split this way
        if self.training.seq_length > self.model.max_position_embeddings:
            raise ValueError(
                f"--seq-length {self.training.seq_length} exceeds the model's max_position_embeddings "
                f"{self.model.max_position_embeddings}; shorten the sequence or raise "
                f"--max-position-embeddings"
            )

    def to_dict(self) -> dict:
        """The resolved configuration as JSON-ready dicts (``config.json`` in each checkpoint)."""
        return {
            "model": self.model.to_dict(),
            "model_options": _asdict(self.model_options),
            "optimizer": _asdict(self.optimizer),
            "data": _asdict(self.data),
            "lr_schedule": dataclasses.asdict(self.lr_schedule),
            "training": dataclasses.asdict(self.training),
            "checkpoint": dataclasses.asdict(self.checkpoint),
            "logging": dataclasses.asdict(self.logging),
            # The pipeline fields only when pipelining: PP = 1 configs (and checkpoints) read as before.
            "parallel": {"tensor_model_parallel_size": self.tensor_model_parallel_size,
                         **(self.pipeline.to_dict() if self.pipeline.pipeline_model_parallel_size > 1 else {})},
            "tokenizer": {"tokenizer_model": self.tokenizer_model},
        }


def _asdict(obj: Any) -> Any:
    if obj is None:
        return None
    if dataclasses.is_dataclass(obj):
        return {k: _jsonable(v) for k, v in dataclasses.asdict(obj).items()}
    return _jsonable(obj)


def _jsonable(value: Any) -> Any:
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return str(value)  # enums, paths, dtypes
