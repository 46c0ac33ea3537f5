#!/usr/bin/env python
"""The ablation table: score Hugging Face exports of each stage on the world's benchmarks.

    python tools/ablation_table.py --row "base=runs/x/hf/base" --row "+ KI=runs/x/hf/ki" ... \\
        --data-dir runs/x/world/benchmarks --heldout-general runs/x/world/heldout/general.jsonl \\
        --output-dir runs/x/ablation

Writes OUT/ablation.md, OUT/ablation.json and OUT/ablation.png (accuracy with 95% CI per benchmark beside
chance, and the held-out general-text perplexity), and prints the table. What is scored and how:
megapmc/sample_data/world/ablation.py.
"""
import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from megapmc.sample_data.world.ablation import TASK_TITLES, TASKS, markdown, score_row, to_json  # noqa: E402
from megapmc.utils.io import write_text_atomic  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--row", action="append", required=True, metavar="NAME=HF_DIR",
                   help="a table row: its name and the Hugging Face directory of its model (repeatable, in order)")
    p.add_argument("--data-dir", required=True, help="benchmark files in their original layout")
    p.add_argument("--heldout-general", required=True, help="JSONL of general text no model trained on")
    p.add_argument("--output-dir", required=True)
    args = p.parse_args(argv)
    rows = []
    for spec in args.row:
        name, sep, hf_dir = spec.rpartition("=")
        if not sep or not name or not Path(hf_dir, "config.json").is_file():
            p.error(f"--row {spec!r}: expected NAME=HF_DIR with HF_DIR/config.json (a tools/convert_checkpoint.py export)")
        rows.append((name, hf_dir))
    args.rows = rows
    return args


def plot(rows, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, ax_ppl) = plt.subplots(1, 2, figsize=(12, 4.2), gridspec_kw={"width_ratios": [3, 1]})
    width = 0.8 / len(rows)
    for r, row in enumerate(rows):
        xs = [t + (r - (len(rows) - 1) / 2) * width for t in range(len(TASKS))]
        accs = [100 * row.tasks[t].acc for t in TASKS]
        errs = [[a - 100 * row.tasks[t].ci95[0] for a, t in zip(accs, TASKS)],
                [100 * row.tasks[t].ci95[1] - a for a, t in zip(accs, TASKS)]]
        ax.bar(xs, accs, width, yerr=errs, capsize=2, label=row.name)
    for t, task in enumerate(TASKS):
        chance = 100 * rows[0].tasks[task].chance
        ax.hlines(chance, t - 0.45, t + 0.45, colors="k", linestyles="dashed", linewidth=1)
    ax.set_xticks(range(len(TASKS)), [TASK_TITLES[t] for t in TASKS])
    ax.set_ylabel("accuracy % (95% CI); dashed: chance")
    ax.set_ylim(0, 100)
    ax.legend(fontsize=7, loc="upper left")
    ppl = [row.general_ppl for row in rows]
    ax_ppl.barh(range(len(rows)), ppl, color=[f"C{i}" for i in range(len(rows))])
    for i, value in enumerate(ppl):
        ax_ppl.text(value, i, f" {value:.1f}", va="center", fontsize=7)
    ax_ppl.set_xscale("log")  # forgetting spans orders of magnitude
    ax_ppl.set_yticks(range(len(rows)), [row.name for row in rows], fontsize=7)
    ax_ppl.invert_yaxis()
    ax_ppl.set_xlabel("general-text perplexity, held out (log)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None):
    args = parse_args(argv)
    from megapmc.evaluation.backends import HFBackend

    scored = []
    for name, hf_dir in args.rows:
        backend = HFBackend.from_pretrained(hf_dir, batch_size=32, show_progress=False)
        scored.append(score_row(name, backend, args.data_dir, args.heldout_general))
        print(f"scored {name}", flush=True)
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    table = markdown(scored)
    write_text_atomic(out / "ablation.md", table)
    write_text_atomic(out / "ablation.json", json.dumps(to_json(scored), indent=1) + "\n")
    plot(scored, out / "ablation.png")
    print(table, end="")
    print(f"wrote {out / 'ablation.md'}, ablation.json, ablation.png")


if __name__ == "__main__":
    main()
