"""The training loop shared by pretraining and instruction tuning.

``train(config, dataset_provider)`` builds the model, the data-parallel wrapper and the optimizer,
resumes from ``--load`` when there is something to resume, and runs ``train_iters`` iterations. The
datasets are injected: pretraining passes the blended 15:4:1 datasets, instruction tuning its packed
SFT datasets (items with ``loss_mask``, ``position_ids``, ``segment_ids``).

One iteration = one global batch = ``num_micro_batches`` micro-batches per DP rank (or, when the loader
yields whole steps, as many as that step holds: instruction tuning's ``--global-batch-size`` samples
packed into a varying number of rows). ``consumed_samples`` grows by the samples the step actually held
(a row's ``num_samples``, else one per row), summed over ranks. The loss is
``sum(loss × mask) / sum(mask)`` over the whole global batch: the mask tokens are counted across
micro-batches and DP ranks before the first backward, so every target token weighs the same however
the samples fall on ranks (Megatron's token-level averaging).
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import random
import signal
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch
import torch.distributed as dist

from megapmc.checkpoint.checkpointing import (
    CheckpointDamaged,
    CheckpointError,
    agree,
    read_optimizer_state,
    resolve_checkpoint_dir,
    run_state_path,
    saved_data_parallel_size,
    save_checkpoint,
    set_rng_state,
)
from megapmc.checkpoint.resume import load_for_resume
from megapmc.optim.lr_schedule import LRScheduler
from megapmc.parallel.state import ParallelState, destroy_parallel, initialize_parallel
from megapmc.training import worker_exit
from megapmc.pipeline_parallel.schedules import (
    check_num_micro_batches,
    get_forward_backward_func,
    micro_batch_multiple,
    pad_micro_batches,
)
from megapmc.pipeline_parallel.stage import build_pipeline_model
from megapmc.training.config import RunConfig
from megapmc.training.logging import IterationStats, TrainingLogger

EXIT_SIGNALS = (signal.SIGTERM, signal.SIGUSR1)


class TrainingError(RuntimeError):
    """The run cannot go on (e.g. too many NaN/Inf steps in a row); the message says what to try."""


@dataclass
class TrainData:
    """What a dataset provider hands the loop."""

    train_dataset: torch.utils.data.Dataset
    valid_dataset: torch.utils.data.Dataset | None = None
    train_iters: int | None = None  # the run length when the provider derives it (e.g. from epochs)
    summary: str | None = None  # printed once (the data plan)
    num_workers: int = 0
    # (dataset, consumed_samples, micro_batch_size, global_batch_size, parallel, num_workers) -> loader
    loader_builder: Callable | None = None
    # The loader yields whole steps (this rank's list of micro-batches) rather than single micro-batches:
    # instruction tuning, whose steps hold a fixed number of samples in a varying number of rows.
    yields_steps: bool = False


DatasetProvider = Callable[[RunConfig, ParallelState], TrainData]


@dataclass
class TrainResult:
    iteration: int
    consumed_samples: int
    exit_reason: str  # "finished", "signal", "exit_interval", "exit_duration"
    last_loss: float | None
    checkpoint: Path | None


class _ExitSignal:
    """Remembers a SIGTERM/SIGUSR1 so the loop can finish the iteration, save and exit."""

    def __init__(self, enabled: bool):
        self.received: int | None = None
        self._previous = {}
        if enabled:
            for sig in EXIT_SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)

    def _handle(self, signum, frame):
        self.received = signum

    def restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def _device() -> torch.device:
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    return torch.device("cpu")


def cuda_connections_notice(tp_size: int, device: torch.device, environ=os.environ) -> str | None:
    """Megatron's TP/SP communication overlap relies on CUDA_DEVICE_MAX_CONNECTIONS=1 (one work queue,
    so a collective is issued before the GEMM it overlaps); a one-line notice when that is not set."""
    value = environ.get("CUDA_DEVICE_MAX_CONNECTIONS")
    if tp_size == 1 or device.type != "cuda" or value == "1":
        return None
    return (f"notice: CUDA_DEVICE_MAX_CONNECTIONS is {'unset' if value is None else repr(value)} with tensor "
            f"parallelism; export CUDA_DEVICE_MAX_CONNECTIONS=1 before launching so the TP communication "
            f"overlaps with compute")


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _all_reduce(tensor: torch.Tensor, group=None) -> torch.Tensor:
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(tensor, group=group)
    return tensor


def _default_loader_builder():
    from megapmc.data.loader import build_pretraining_data_loader

    return build_pretraining_data_loader


class Trainer:
    """Holds the pieces of one run; ``train()`` below is the usual way in."""

    def __init__(self, config: RunConfig, data: TrainData, parallel: ParallelState):
        from megapmc.model.flops import flops_per_token
        from megapmc.optim import DataParallel, build_optimizer

        self.config, self.data, self.parallel = config, data, parallel
        tcfg = config.training
        self.num_micro_batches = tcfg.num_micro_batches(parallel.dp_size)
        self.train_iters = tcfg.train_iters or data.train_iters
        if self.train_iters is None:
            raise ValueError("the run length is unknown: give --train-iters, or --train-epochs with a data "
                             "provider that derives the iterations")
        self.device = _device()
        self.dtype = torch.bfloat16 if tcfg.bf16 else torch.float32
        self.loader_builder = data.loader_builder or _default_loader_builder()

        self.model = build_pipeline_model(config.model, parallel, config.model_options, config.pipeline,
                                          self.device, self.dtype, seed=tcfg.seed)
        # No pipelining, 1F1B or interleaved: the one place the micro-batches of a step are run.
        self.forward_backward = get_forward_backward_func(config.pipeline, config.model.num_layers,
                                                          self.num_micro_batches)
        self._micro_batch_multiple = micro_batch_multiple(config.pipeline, config.model.num_layers)
        self._padding_noticed = False
        self._loaded_from: Path | None = None
        self._resume_note = ""
        self._verify_note = ""
        self._verify_report = None  # this rank's VerifyReport of the loaded checkpoint
        self.run_id: str | None = None  # kept across resumes; a fresh run takes rank 0's new one
        self.iteration = self.consumed_samples = self.skipped_iters = self.consecutive_skipped = 0
        self.scheduler = LRScheduler(config.lr_schedule.resolve(self.train_iters))
        resume = self._load_weights()
        self.ddp = DataParallel(self.model, config.optimizer, parallel)
        self.optimizer = build_optimizer(self.ddp, config.optimizer, parallel)
        error, self._rng_state = None, None
        try:
            self._rng_state = self._load_training_state(resume)
        except CheckpointError as e:
            error = e
        self._check_resume_consistency(error)

        self.logger = TrainingLogger(
            config.logging, enabled=parallel.rank == 0, save_dir=config.checkpoint.save,
            train_iters=self.train_iters, start_iteration=self.iteration, world_size=parallel.world_size,
            flops_per_token=flops_per_token(config.model, tcfg.seq_length,
                                            config.model.padded_vocab_size(parallel.tp_size)),
            peak_tflops=self._peak_tflops(),
        )

    # ----------------------------------------------------------------------------- loading

    def _peak_tflops(self) -> float | None:
        if self.config.logging.device_peak_tflops is not None:
            return self.config.logging.device_peak_tflops
        if self.device.type != "cuda":
            return None  # MFU is only meaningful against a named accelerator peak
        from megapmc.model.flops import peak_tflops_for_device

        return peak_tflops_for_device(torch.cuda.get_device_name(self.device), bf16=self.config.training.bf16)

    def _model_state(self) -> dict[str, torch.Tensor]:
        return self.model.state_dict()

    def _print0(self, message: str) -> None:
        if self.parallel.rank == 0:
            print(message, flush=True)

    def _resolve_load(self) -> tuple[Path | None, bool]:
        """(checkpoint directory, whether to resume its training state); (None, False): a fresh start."""
        ccfg = self.config.checkpoint
        # `--save X --load X` on the first launch of a run: nothing to resume yet.
        first_launch = (ccfg.load is not None and ccfg.save is not None and not Path(ccfg.load).exists()
                        and Path(ccfg.load).resolve() == Path(ccfg.save).resolve())
        if ccfg.load is not None and not first_launch:
            ckpt_dir = resolve_checkpoint_dir(ccfg.load, ccfg.ckpt_step, ccfg.fallback_to_intact_checkpoint)
            if ckpt_dir is not None:
                return ckpt_dir, not ccfg.finetune
        if ccfg.pretrained_checkpoint is not None:
            ckpt_dir = resolve_checkpoint_dir(ccfg.pretrained_checkpoint)
            if ckpt_dir is None:
                raise CheckpointError(f"--pretrained-checkpoint {ccfg.pretrained_checkpoint}: no checkpoint there")
            return ckpt_dir, False
        return None, False

    def _load_weights(self):
        """Load model weights from --load (resume or --finetune) or --pretrained-checkpoint, verified and
        agreed on by every rank; return the checkpoint whose optimizer/run state is still to be restored
        (None: a fresh start)."""
        ccfg = self.config.checkpoint
        error, (ckpt_dir, full) = None, (None, False)
        try:
            ckpt_dir, full = self._resolve_load()
        except CheckpointError as e:
            error = e
        agree(self.parallel, error)
        if ckpt_dir is None:
            return None
        # The optimizer state is read once the optimizer exists: which elements it needs depends on its
        # layout. Its shards are verified now, with the rest.
        loaded = load_for_resume(
            ckpt_dir, self.parallel, self.config.model.to_dict(), self._model_state(), load_run_state=full,
            load_optimizer_later=full and not ccfg.no_load_optim, verify=ccfg.verify_checkpoint,
            fallback=ccfg.fallback_to_intact_checkpoint, notify=self._print0,
        )
        self.model.load_state_dict(loaded.model_state, strict=True)
        self._loaded_from = loaded.path
        self._verify_report = loaded.verified
        return loaded if full else None

    def _load_training_state(self, loaded) -> dict | None:
        if loaded is None:
            return None
        if not self.config.checkpoint.no_load_optim:
            saved_dp = saved_data_parallel_size(loaded.config)
            optim_state = read_optimizer_state(loaded.path, self.parallel, loaded.config,
                                               self.optimizer.shard_layout())
            self.optimizer.load_sharded_state_dict(optim_state)
            if saved_dp not in (1, self.parallel.dp_size):
                self._resume_note = (f"; optimizer states merged from {saved_dp} data-parallel shards "
                                     f"(this run has {self.parallel.dp_size})")
        state = loaded.run_state
        try:
            self.iteration = int(state["iteration"])
            self.consumed_samples = int(state["consumed_samples"])
            self.skipped_iters = int(state["skipped_iters"])
            self.consecutive_skipped = int(state["consecutive_skipped_iters"])
            self.scheduler.load_state_dict(state["lr_scheduler"])
            rng = None if self.config.checkpoint.no_load_rng else state["rng"]
        except (KeyError, TypeError, ValueError) as e:
            path = run_state_path(loaded.path, self.parallel, loaded.config)
            raise CheckpointDamaged(f"{path}: missing or malformed {e}; the file is damaged or was edited; resume "
                                    f"another checkpoint (--ckpt-step N or --fallback-to-intact-checkpoint)") from None
        self.run_id = state.get("run_id") or None
        return rng

    def _resume_digest(self) -> dict:
        """What every rank must agree on before the first step."""
        config = json.dumps(self.config.to_dict(), sort_keys=True, default=str).encode()
        return {
            "checkpoint": None if self._loaded_from is None else self._loaded_from.name,
            "iteration": self.iteration, "consumed_samples": self.consumed_samples,
            "skipped_iters": self.skipped_iters, "consecutive_skipped_iters": self.consecutive_skipped,
            "lr_scheduler": json.dumps(self.scheduler.state_dict(), sort_keys=True),
            "run_id": self.run_id, "config_sha256": hashlib.sha256(config).hexdigest(),
        }

    def _check_resume_consistency(self, error: CheckpointError | None) -> None:
        """One world all-gather, before the first step: every rank's load error (raised on all ranks), its
        resume digest (a disagreement is an error on every rank, never a hang in a later collective) and
        its verification time (logged). A fresh run adopts rank 0's new run id."""
        report = self._verify_report
        proposal = uuid.uuid4().hex[:16]
        gathered = agree(self.parallel, error, (self._resume_digest(), proposal,
                                                None if report is None else (report.files, report.bytes,
                                                                             report.seconds)))
        digests = [d for d, _, _ in gathered]
        diffs = [f"{key}: " + ", ".join(f"rank {r} has {d[key]!r}" for r, d in enumerate(digests))
                 for key in digests[0] if any(d[key] != digests[0][key] for d in digests)]
        if diffs:
            raise CheckpointError(
                "the ranks disagree on the state to resume (" + "; ".join(diffs)[:600] + "): the checkpoint's "
                "state files were edited or mixed, or the ranks were launched with different flags; resume "
                "another checkpoint (--ckpt-step N) and launch every rank with the same command"
            )
        if self.run_id is None:
            self.run_id = gathered[0][1]
        reports = [r for _, _, r in gathered if r is not None]
        if self._loaded_from is not None and not reports and self.config.checkpoint.verify_checkpoint != "off":
            self._verify_note = (f"notice: {self._loaded_from} has no manifest.json (a converted checkpoint): its "
                                 f"weights are read unverified")
        if reports:
            self._verify_note = (
                f"verified checkpoint {self._loaded_from.name} ({self.config.checkpoint.verify_checkpoint}): "
                f"{sum(r[0] for r in reports)} files, {sum(r[1] for r in reports) / 1e6:.1f} MB on "
                f"{len(reports)} ranks in parallel, slowest rank {max(r[2] for r in reports):.2f} s"
            )

    # ----------------------------------------------------------------------------- saving

    def save(self) -> Path:
        ccfg = self.config.checkpoint
        run_state = {
            "iteration": self.iteration, "consumed_samples": self.consumed_samples,
            "skipped_iters": self.skipped_iters, "consecutive_skipped_iters": self.consecutive_skipped,
            "lr_scheduler": self.scheduler.state_dict(),
        }
        path = save_checkpoint(
            ccfg.save, self.iteration, self.parallel, self.config.to_dict(), self._model_state(),
            self.optimizer.sharded_state_dict(), self.config.optimizer.use_distributed_optimizer, run_state,
            keep_last=ccfg.keep_last, run_id=self.run_id,
        )
        self.logger.print(f"saved checkpoint {path}")
        self.logger.log_event("checkpoint", self.iteration, path=str(path))
        return path

    # ----------------------------------------------------------------------------- batches

    def _loader(self, dataset, consumed_samples: int) -> Iterator[dict]:
        tcfg = self.config.training
        loader = self.loader_builder(dataset, consumed_samples, tcfg.micro_batch_size, tcfg.global_batch_size,
                                     self.parallel, self.data.num_workers)
        return iter(loader)

    def _prepare(self, batch: dict) -> dict:
        """Dataset tensors → model inputs: feed ``tokens[:-1]``, predict ``tokens[1:]``."""
        tokens = batch["tokens"].to(self.device, non_blocking=True)  # [b, s+1]
        out = {"input_ids": tokens[:, :-1], "labels": tokens[:, 1:]}  # [b, s] each
        mask = batch.get("loss_mask")
        out["loss_mask"] = (torch.ones_like(out["labels"], dtype=torch.float32) if mask is None
                            else mask.to(self.device, torch.float32))
        for key in ("position_ids", "segment_ids", "num_samples"):
            if batch.get(key) is not None:
                out[key] = batch[key].to(self.device)
        return out

    def _next_step(self, it: Iterator) -> list[dict] | None:
        """This rank's micro-batches of the next step (None when the loader is exhausted)."""
        if self.data.yields_steps:
            step = next(it, None)
            return None if step is None else [self._prepare(b) for b in step]
        batches = [next(it, None) for _ in range(self.num_micro_batches)]
        return None if any(b is None for b in batches) else [self._prepare(b) for b in batches]

    def _global_counts(self, micro_batches: list[dict]) -> tuple[torch.Tensor, int, int]:
        """Target tokens, samples and rows of the whole global batch (all micro-batches, all DP ranks)."""
        local = torch.zeros(3, dtype=torch.float64, device=self.device)
        for mb in micro_batches:
            rows = mb["labels"].shape[0]
            samples = mb["num_samples"].sum() if "num_samples" in mb else rows
            local += torch.stack([mb["loss_mask"].sum(dtype=torch.float64),
                                  torch.as_tensor(samples, dtype=torch.float64, device=self.device),
                                  torch.tensor(float(rows), dtype=torch.float64, device=self.device)])
        count, samples, rows = _all_reduce(local, self.parallel.dp_group)
        if count <= 0:
            raise TrainingError(
                f"iteration {self.iteration + 1}: the global batch has no target tokens (every loss_mask is 0); "
                f"check the instruction data"
            )
        return count, int(samples.item()), int(rows.item())

    # ----------------------------------------------------------------------------- steps

    def train_step(self, micro_batches: list[dict]) -> tuple[float, float, bool, float, int, int]:
        """One optimizer step on a global batch; returns (loss, grad norm, skipped, lr, samples, rows)."""
        count, samples, rows = self._global_counts(micro_batches)
        # DataParallel averages gradients over DP ranks; × dp_size turns that into a sum, ÷ count makes
        # it the token mean over the global batch.
        scale = self.parallel.dp_size / count.float()
        self.optimizer.zero_grad()
        loss_sum = self._run_schedule(micro_batches, scale, f"iteration {self.iteration + 1}")
        self.ddp.finish_grad_sync()
        lr = self.scheduler.get_lr()
        result = self.optimizer.step(lr)
        if not result.skipped:
            self.scheduler.step()
        loss = (_all_reduce(loss_sum.reshape(1), self.parallel.dp_group)[0].double() / count).item()
        return loss, float(result.grad_norm), bool(result.skipped), lr, samples, rows

    def _run_schedule(self, micro_batches: list[dict], scale, where: str, forward_only: bool = False) -> torch.Tensor:
        """The step's micro-batches through the schedule. Pipelined, a step whose micro-batches are short
        or too few for the schedule (instruction tuning's steps, a partial validation step) is first padded
        with masked rows (``pad_micro_batches``: the loss and gradients stay those of the real rows), with
        a one-line notice the first time."""
        if self.parallel.pp_size > 1:
            micro_batches, rows, extra = pad_micro_batches(micro_batches, self.config.training.micro_batch_size,
                                                           self._micro_batch_multiple)
            if (rows or extra) and not self._padding_noticed:
                self._padding_noticed = True
                what = [f"{rows} rows to --micro-batch-size {self.config.training.micro_batch_size}"] if rows else []
                if extra:
                    what.append(f"{extra} micro-batches to a multiple of --pipeline-model-parallel-size "
                                f"{self.parallel.pp_size} for the interleaved schedule")
                self.logger.print(f"note: {where}: padded the step with masked {' and '.join(what)} (no effect on "
                                  f"the loss or the gradients; said once)")
        return self.forward_backward(self.model, self.ddp, micro_batches, self.parallel, scale,
                                     forward_only=forward_only)

    @torch.no_grad()
    def evaluate(self) -> float | None:
        """Mean token loss over ``eval_iters`` global batches of the validation set (same samples every time)."""
        if self.data.valid_dataset is None:
            return None
        self.model.eval()
        it = self._loader(self.data.valid_dataset, 0)
        loss_sum = torch.zeros((), dtype=torch.float64, device=self.device)
        count = torch.zeros((), dtype=torch.float64, device=self.device)
        for _ in range(self.config.training.eval_iters):
            micro_batches = self._next_step(it)
            if not micro_batches:
                break
            loss_sum += self._run_schedule(micro_batches, 1.0, "validation", forward_only=True).double()
            count += sum(mb["loss_mask"].sum(dtype=torch.float64) for mb in micro_batches)
        self.model.train()
        totals = _all_reduce(torch.stack([loss_sum, count]), self.parallel.dp_group)
        return (totals[0] / totals[1]).item() if totals[1] > 0 else None

    def _stop_reason(self, handler: _ExitSignal, started_at: float) -> str | None:
        """"signal" if any rank received SIGTERM/SIGUSR1, "exit_duration" if any rank ran past
        --exit-duration-in-mins, else None. One MAX all-reduce: all ranks must agree before saving."""
        limit = self.config.training.exit_duration_in_mins
        flags = torch.tensor([float(handler.received is not None),
                              float(limit is not None and time.time() - started_at > 60.0 * limit)])
        if dist.is_available() and dist.is_initialized() and dist.get_backend() == "nccl":
            flags = flags.to(self.device)
        self.parallel.all_reduce_max(flags)
        if flags[0] > 0:
            return "signal"
        return "exit_duration" if flags[1] > 0 else None

    def run(self, exit_signal: _ExitSignal | None = None, started_at: float | None = None) -> TrainResult:
        """Train to ``train_iters``. ``exit_signal``: a handler installed before the setup, so that a
        SIGTERM during it (index building, weight loading) also ends the run cleanly; ``started_at``:
        when the process began, for --exit-duration-in-mins."""
        started_at = time.time() if started_at is None else started_at
        tcfg, ccfg = self.config.training, self.config.checkpoint
        if self.data.summary:
            self.logger.print(self.data.summary)
        notice = cuda_connections_notice(self.parallel.tp_size, self.device)
        if notice:
            self.logger.print(notice)
        if tcfg.eval_interval and self.data.valid_dataset is None:
            self.logger.print("no validation data (no --valid-data-path, and --split holds no validation "
                              "documents out): validation is skipped")
        if self._verify_note:
            self.logger.print(self._verify_note)
        if self.iteration:
            self.logger.print(f"resumed from {self._loaded_from} at iteration {self.iteration}, "
                              f"{self.consumed_samples} samples consumed{self._resume_note}")
            self.logger.log_event("resume", self.iteration, consumed_samples=self.consumed_samples)
        train_it = self._loader(self.data.train_dataset, self.consumed_samples)
        if self._rng_state is not None:
            set_rng_state(self._rng_state)  # after every RNG draw of the setup, as in the uninterrupted run
        handler = exit_signal or _ExitSignal(tcfg.exit_signal_handler)
        self.model.train()
        exit_reason, last_loss, last_ckpt = "finished", None, None
        start_iteration = self.iteration
        try:
            if self._stop_reason(handler, started_at) == "signal":  # during the setup: nothing new to save
                self.logger.print(f"exiting at iteration {self.iteration} (signal during the setup)")
                return TrainResult(self.iteration, self.consumed_samples, "signal", None, None)
            while self.iteration < self.train_iters:
                start = time.perf_counter()
                micro_batches = self._next_step(train_it)
                if micro_batches is None:
                    raise TrainingError(f"the training data ran out at iteration {self.iteration + 1} of "
                                        f"{self.train_iters}; the data provider planned too few steps")
                loss, grad_norm, skipped, lr, samples, rows = self.train_step(micro_batches)
                self.iteration += 1
                self.consumed_samples += samples
                last_loss = loss
                self.logger.log_iteration(IterationStats(
                    self.iteration, self.consumed_samples, loss, lr, grad_norm, skipped,
                    num_tokens=rows * tcfg.seq_length, elapsed_s=time.perf_counter() - start,
                    samples=samples,
                ))
                self._count_skips(skipped)
                if tcfg.eval_interval and self.iteration % tcfg.eval_interval == 0:
                    self._validate()
                saved = False
                if ccfg.save_interval and self.iteration % ccfg.save_interval == 0:
                    last_ckpt, saved = self.save(), True
                exit_reason = self._stop_reason(handler, started_at) or exit_reason
                if exit_reason == "finished" and tcfg.exit_interval and self.iteration % tcfg.exit_interval == 0:
                    exit_reason = "exit_interval"
                if exit_reason != "finished":
                    if ccfg.save and not saved:
                        last_ckpt = self.save()
                    self.logger.print(f"exiting at iteration {self.iteration} ({exit_reason})")
                    break
            else:
                if self.iteration > start_iteration:  # nothing ran when restarted after the last iteration
                    if tcfg.eval_interval and self.iteration % tcfg.eval_interval:
                        self._validate()
                    if ccfg.save and (not ccfg.save_interval or self.iteration % ccfg.save_interval):
                        last_ckpt = self.save()
        finally:
            handler.restore()
            self.logger.close()
            del train_it  # its loader workers end here, before the process groups do
        return TrainResult(self.iteration, self.consumed_samples, exit_reason, last_loss, last_ckpt)

    def close(self) -> None:
        """Wait for every collective this rank started (an overlapped parameter all-gather), so that none
        is in flight when the process groups are destroyed."""
        self.ddp.finish_param_sync()

    def _validate(self) -> None:
        loss = self.evaluate()
        if loss is not None:
            self.logger.log_validation(self.iteration, loss)

    def _count_skips(self, skipped: bool) -> None:
        if not skipped:
            self.consecutive_skipped = 0
            return
        self.skipped_iters += 1
        self.consecutive_skipped += 1
        self.logger.print(f"iteration {self.iteration}: NaN/Inf in the gradients, step skipped "
                          f"({self.consecutive_skipped} in a row, {self.skipped_iters} in total)")
        limit = self.config.training.max_consecutive_skipped_iters
        if self.consecutive_skipped >= limit:
            raise TrainingError(
                f"{limit} iterations in a row (up to iteration {self.iteration}) had NaN/Inf gradients and "
                f"were skipped; the run is diverging. Restart from the last checkpoint with a lower --lr, a "
                f"longer --lr-warmup-iters or --clip-grad, or check the data around consumed sample "
                f"{self.consumed_samples} (raise --max-consecutive-skipped-iters to tolerate more)"
            )


def train(config: RunConfig, dataset_provider: DatasetProvider, parallel: ParallelState | None = None) -> TrainResult:
    """Run (or resume) training: the library entry point used by ``megapmc.pretrain`` and ``megapmc.finetune``.
    When ``parallel`` is None the process groups are created here and torn down in order at the end."""
    owns_groups = parallel is None
    if config.training.exit_signal_handler:
        worker_exit.register_worker()
    if parallel is None:
        if torch.cuda.is_available():
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
        parallel = initialize_parallel(config.tensor_model_parallel_size,
                                       config.pipeline.pipeline_model_parallel_size)
    started_at = time.time()
    check_num_micro_batches(config.pipeline, config.model.num_layers,  # fail before building anything
                            config.training.num_micro_batches(parallel.dp_size))
    exit_signal = _ExitSignal(config.training.exit_signal_handler)
    try:
        try:
            _seed_everything(config.training.seed)
            data = dataset_provider(config, parallel)
            trainer = Trainer(config, data, parallel)
        except BaseException:
            exit_signal.restore()
            raise
        result = trainer.run(exit_signal, started_at)
        trainer.close()
    except CheckpointError:
        if owns_groups:  # raised on every rank at once (checkpointing.agree): the teardown stays orderly
            destroy_parallel()
        raise
    if owns_groups:
        destroy_parallel()
    worker_exit.report_clean_exit(result.exit_reason, result.iteration)
    return result
