"""What a run reports: a console line per log interval, TensorBoard scalars, ``metrics.jsonl``, progress.

Only the first rank logs. Console lines and progress share one stream (stdout): on a terminal progress is
a tqdm bar and every line is written through it (``tqdm.write``), so no line is glued to a bar fragment;
when stdout is not a terminal (a log file, a pipe) there is no bar, only a plain progress line every
``LoggingConfig.progress_interval_s`` seconds, since a bar's carriage returns garble a file.
``metrics.jsonl`` (in the ``--save`` directory) gets one JSON object per iteration and is appended across
restarts; after a crash the iterations since the last checkpoint appear again, and readers keep the last
record of each iteration (``metrics_file.read_metrics``). Losses are written with ``repr`` precision, so
a record holds the exact fp32 value the run computed.
"""
from __future__ import annotations

import datetime
import json
import math
import resource
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import torch
from tqdm import tqdm

from megapmc.training.config import LoggingConfig
from megapmc.training.metrics_file import METRICS_NAME


@dataclass
class IterationStats:
    iteration: int  # completed iterations, this one included
    consumed_samples: int
    loss: float
    lr: float
    grad_norm: float
    skipped: bool
    num_tokens: int  # tokens processed this iteration, all ranks
    elapsed_s: float
    samples: int | None = None  # samples this iteration consumed, all ranks (logged as consumed_samples grows)


def peak_memory_gib() -> float:
    """Peak accelerator memory allocated by this process, or its peak resident set on the CPU."""
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        return torch.cuda.max_memory_allocated() / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # kilobytes on Linux


class PlainProgress:
    """The progress bar's stand-in when output is not a terminal: whole lines, at most one every
    ``interval_s`` seconds (``train: 120/1000 iterations (12.0%) | 2.50 s/it | eta 0:36:40``)."""

    def __init__(self, total: int, initial: int, stream: TextIO, interval_s: float):
        self.total, self.n, self.stream, self.interval_s = total, initial, stream, interval_s
        self._start_n, self._start = initial, time.monotonic()
        self._last = self._start

    def update(self, n: int = 1) -> None:
        self.n += n
        now = time.monotonic()
        if now - self._last >= self.interval_s or self.n >= self.total:
            self._last = now
            self.write(self.line(now))

    def line(self, now: float) -> str:
        done = self.n - self._start_n
        per_it = (now - self._start) / done if done else float("nan")
        eta = datetime.timedelta(seconds=round(per_it * (self.total - self.n))) if done else "?"
        return (f"train: {self.n}/{self.total} iterations ({100 * self.n / max(self.total, 1):.1f}%) | "
                f"{per_it:.2f} s/it | eta {eta}")

    def write(self, message: str) -> None:
        self.stream.write(message + "\n")
        self.stream.flush()

    def close(self) -> None:
        pass


def _is_terminal(stream) -> bool:
    return bool(getattr(stream, "isatty", lambda: False)())


class TrainingLogger:
    """Per-iteration records, interval summaries and the progress bar of one run (first rank only)."""

    def __init__(
        self,
        config: LoggingConfig,
        enabled: bool,
        save_dir: str | None,
        train_iters: int,
        start_iteration: int,
        world_size: int,
        flops_per_token: float,
        peak_tflops: float | None,
        stream: TextIO | None = None,
    ):
        self.config = config
        self.stream = stream if stream is not None else sys.stdout
        self.enabled = enabled
        self.world_size = world_size
        self.flops_per_token = flops_per_token
        self.peak_tflops = peak_tflops
        self._interval: list[IterationStats] = []
        self._metrics = self._writer = self._bar = None
        if not enabled:
            return
        if save_dir is not None:
            Path(save_dir).mkdir(parents=True, exist_ok=True)
            self._metrics = open(Path(save_dir) / METRICS_NAME, "a")
            self._write({"event": "start", "iteration": start_iteration, "time": time.time()})
        if config.tensorboard_dir:
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(config.tensorboard_dir, purge_step=start_iteration + 1)
        if config.progress_bar and _is_terminal(self.stream):
            self._bar = tqdm(total=train_iters, initial=start_iteration, desc="train", unit="it",
                             dynamic_ncols=True, file=self.stream, mininterval=1.0)
        elif config.progress_bar:
            self._bar = PlainProgress(train_iters, start_iteration, self.stream, config.progress_interval_s)

    def _write(self, record: dict) -> None:
        self._metrics.write(json.dumps(record) + "\n")
        self._metrics.flush()

    def print(self, message: str) -> None:
        if not self.enabled:
            return
        if isinstance(self._bar, tqdm):
            self._bar.write(message, file=self.stream)  # clears the bar, writes the line, redraws the bar
        else:
            self.stream.write(message + "\n")
            self.stream.flush()

    def throughput(self, stats: list[IterationStats]) -> dict:
        seconds = sum(s.elapsed_s for s in stats)
        tokens = sum(s.num_tokens for s in stats)
        tokens_per_s = tokens / seconds if seconds > 0 else float("nan")
        tflops = tokens_per_s * self.flops_per_token / self.world_size / 1e12
        out = {"tokens_per_s": tokens_per_s, "tflops_per_device": tflops}
        if self.peak_tflops:
            out["mfu"] = tflops / self.peak_tflops
        return out

    def log_iteration(self, stats: IterationStats) -> None:
        if not self.enabled:
            return
        self._interval.append(stats)
        record = {
            "iteration": stats.iteration, "consumed_samples": stats.consumed_samples, "loss": stats.loss,
            "lr": stats.lr, "grad_norm": stats.grad_norm, "skipped": stats.skipped,
            "iter_time_s": stats.elapsed_s, **self.throughput([stats]), "time": time.time(),
        }
        if stats.samples is not None:
            record["samples"] = stats.samples
        if self._metrics is not None:
            self._write(record)
        if self._writer is not None:
            for key in ("loss", "lr", "grad_norm"):
                if math.isfinite(record[key]):
                    self._writer.add_scalar(f"train/{key}", record[key], stats.iteration)
            self._writer.add_scalar("train/skipped", float(stats.skipped), stats.iteration)
        if isinstance(self._bar, tqdm):
            self._bar.set_postfix(loss=f"{stats.loss:.4f}", lr=f"{stats.lr:.2e}", refresh=False)
        if self._bar is not None:
            self._bar.update(1)
        if stats.iteration % self.config.log_interval == 0:
            self._log_interval()

    def _log_interval(self) -> None:
        stats, self._interval = self._interval, []
        finite = [s.loss for s in stats if math.isfinite(s.loss)]
        loss = sum(finite) / len(finite) if finite else float("nan")
        last = stats[-1]
        tp = self.throughput(stats)
        mem = peak_memory_gib()
        parts = [
            f"iteration {last.iteration:8d}", f"consumed samples {last.consumed_samples:12d}",
            f"lr {last.lr:.4e}", f"loss {loss:.6f}", f"grad norm {last.grad_norm:.4f}",
            f"skipped {sum(s.skipped for s in stats)}",
            f"tokens/s {tp['tokens_per_s']:.1f}", f"TFLOP/s/device {tp['tflops_per_device']:.2f}",
        ]
        if "mfu" in tp:
            parts.append(f"MFU {100 * tp['mfu']:.1f}%")
        parts.append(f"mem {mem:.2f} GiB")
        self.print(" | ".join(parts))
        if self._writer is not None:
            step = last.iteration
            self._writer.add_scalar("train/loss_interval_mean", loss, step)
            self._writer.add_scalar("throughput/tokens_per_s", tp["tokens_per_s"], step)
            self._writer.add_scalar("throughput/tflops_per_device", tp["tflops_per_device"], step)
            if "mfu" in tp:
                self._writer.add_scalar("throughput/mfu", tp["mfu"], step)
            self._writer.add_scalar("memory/peak_gib", mem, step)
            self._writer.flush()

    def log_validation(self, iteration: int, loss: float) -> None:
        if not self.enabled:
            return
        ppl = math.exp(min(loss, 50.0))
        self.print(f"validation at iteration {iteration} | loss {loss:.6f} | perplexity {ppl:.3f}")
        if self._metrics is not None:
            self._write({"iteration": iteration, "valid_loss": loss, "time": time.time()})
        if self._writer is not None:
            self._writer.add_scalar("valid/loss", loss, iteration)
            self._writer.add_scalar("valid/perplexity", ppl, iteration)
            self._writer.flush()

    def log_event(self, event: str, iteration: int, **fields) -> None:
        if self.enabled and self._metrics is not None:
            self._write({"event": event, "iteration": iteration, **fields, "time": time.time()})

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
        if self._writer is not None:
            self._writer.close()
        if self._metrics is not None:
            self._metrics.close()
