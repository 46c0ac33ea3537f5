"""Draw a run's training loss (and validation loss), learning rate and throughput into one PNG.

    python tools/plot_run.py RUN_DIR [--output run.png]        # RUN_DIR/metrics.jsonl (the --save dir)
    python tools/plot_run.py path/to/metrics.jsonl
    python tools/plot_run.py --tensorboard TB_DIR              # the --tensorboard-dir of a run

A resumed run repeats the iterations after its last checkpoint; the last record of each counts.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from megapmc.training.metrics_file import METRICS_NAME, read_metrics, read_tensorboard


def load_run(source: Path, tensorboard: bool) -> tuple[list[dict], list[dict]]:
    if tensorboard:
        if not source.is_dir():
            raise FileNotFoundError(f"--tensorboard {source}: not a directory")
        train, valid = read_tensorboard(source)
    else:
        path = source / METRICS_NAME if source.is_dir() else source
        if not path.is_file():
            raise FileNotFoundError(
                f"{path}: not found; give the run's --save directory, its metrics.jsonl, or --tensorboard DIR")
        train, valid = read_metrics(path)
    if not train:
        raise ValueError(f"{source}: no training records to plot")
    return train, valid


def plot_run(train: list[dict], valid: list[dict], output: Path, title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def series(key):  # TensorBoard has throughput only at log intervals: plot the points that exist
        points = [(r["iteration"], r[key]) for r in train if r.get(key) is not None]
        return [i for i, _ in points], [v for _, v in points]

    fig, axes = plt.subplots(3, 1, figsize=(9, 10), sharex=True)
    axes[0].plot(*series("loss"), label="train", linewidth=1)
    if valid:
        axes[0].plot([r["iteration"] for r in valid], [r["valid_loss"] for r in valid], "o-", label="validation")
    axes[0].set_ylabel("loss")
    axes[0].legend()
    axes[1].plot(*series("lr"))
    axes[1].set_ylabel("learning rate")
    axes[2].plot(*series("tokens_per_s"), ".-")
    axes[2].set_ylabel("tokens / s")
    axes[2].set_xlabel("iteration")
    for ax in axes:
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_name(output.name + ".tmp.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    tmp.replace(output)
    return output


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("source", nargs="?", help="run directory (--save) or metrics.jsonl")
    p.add_argument("--tensorboard", metavar="DIR", help="read a TensorBoard log directory instead")
    p.add_argument("--output", "-o", help="PNG path (default: SOURCE/run.png or ./run.png)")
    args = p.parse_args(argv)
    if (args.source is None) == (args.tensorboard is None):
        p.error("give a run directory / metrics.jsonl, or --tensorboard DIR")
    source = Path(args.tensorboard or args.source)
    try:
        train, valid = load_run(source, tensorboard=args.tensorboard is not None)
    except (FileNotFoundError, ValueError) as e:
        p.error(str(e))
    default = (source if source.is_dir() else source.parent) / "run.png"
    out = plot_run(train, valid, Path(args.output) if args.output else default, title=str(source))
    print(f"wrote {out} ({len(train)} iterations, {len(valid)} validation points)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
