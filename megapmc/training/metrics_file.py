"""Reading a run back: ``metrics.jsonl`` and the TensorBoard logs that ``logging.TrainingLogger`` writes.

Kept free of torch, so plotting or checking a run (tools/plot_run.py) starts in a fraction of a second.
"""
from __future__ import annotations

import json
from pathlib import Path

METRICS_NAME = "metrics.jsonl"


def read_metrics(path: str | Path) -> tuple[list[dict], list[dict]]:
    """(training records, validation records) of a ``metrics.jsonl``, the last record per iteration
    (a resumed run repeats the iterations after its last checkpoint), sorted by iteration."""
    train: dict[int, dict] = {}
    valid: dict[int, dict] = {}
    with open(path) as f:
        for line_no, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError:  # a line cut short by a kill: the run logs it again after resuming
                continue
            if "event" in record:
                continue
            if "valid_loss" in record:
                valid[record["iteration"]] = record
            elif "loss" in record:
                train[record["iteration"]] = record
    return [train[k] for k in sorted(train)], [valid[k] for k in sorted(valid)]


# TensorBoard tag → metrics.jsonl key, for reading a run back from either source.
TENSORBOARD_TAGS = {"train/loss": "loss", "train/lr": "lr", "train/grad_norm": "grad_norm",
                    "throughput/tokens_per_s": "tokens_per_s", "valid/loss": "valid_loss"}


def read_tensorboard(logdir: str | Path) -> tuple[list[dict], list[dict]]:
    """The same records as ``read_metrics`` from a TensorBoard log directory (last value per step)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(logdir), size_guidance={"scalars": 0})
    acc.Reload()
    train: dict[int, dict] = {}
    valid: dict[int, dict] = {}
    available = set(acc.Tags().get("scalars", []))
    for tag, key in TENSORBOARD_TAGS.items():
        if tag not in available:
            continue
        target = valid if key == "valid_loss" else train
        for event in acc.Scalars(tag):
            target.setdefault(event.step, {"iteration": event.step})[key] = event.value
    return [train[k] for k in sorted(train)], [valid[k] for k in sorted(valid)]
