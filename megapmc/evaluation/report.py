"""Results on disk: ``results.json``, ``results.md`` (one row per task plus the average) and
``samples_TASK.jsonl`` (one line per item, for auditing).

The 95% confidence interval is the **Wilson score interval**, which stays inside [0, 1] and is
honest for the small item counts of ``--limit`` runs (the normal approximation is not).
Every file is written under a temporary name and renamed when complete (``megapmc.utils.io``).
``results_lm_eval.json`` holds the same numbers in lm-evaluation-harness's results layout
(``results[task]["acc,none"]``, ``"acc_stderr,none"``, ``n-shot``, ``n-samples``), for tools that read it.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from megapmc.evaluation.scoring import ItemResult
from megapmc.utils.io import write_json_atomic, write_text_atomic
from megapmc.evaluation.tasks import LoadedSplit

Z_95 = 1.959963984540054


def wilson_interval(correct: int, total: int, z: float = Z_95) -> tuple[float, float]:
    """Wilson score interval for ``correct`` successes out of ``total``; (0, 0) when ``total`` is 0."""
    if total == 0:
        return 0.0, 0.0
    p = correct / total
    denom = 1 + z * z / total
    centre = (p + z * z / (2 * total)) / denom
    half = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclass
class TaskResult:
    task: str
    split: str
    source: str
    mode: str
    num_fewshot: int
    n: int
    correct: int
    acc: float
    ci95: tuple[float, float]
    acc_norm: float | None = None  # log-likelihood mode
    unparsed: int | None = None  # generation mode
    unparsed_ids: list[str] = field(default_factory=list)  # ambiguous ones included
    ambiguous_ids: list[str] = field(default_factory=list)  # several answers given ("A or B")
    truncated: int = 0  # prompts that lost tokens on the left to fit the model's positions
    malformed: list[dict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def summarise(split: LoadedSplit, results: list[ItemResult], mode: str, num_fewshot: int) -> TaskResult:
    n, correct = len(results), sum(r.correct for r in results)
    out = TaskResult(
        task=split.task, split=split.split, source=split.source, mode=mode, num_fewshot=num_fewshot, n=n,
        correct=correct, acc=correct / n if n else 0.0, ci95=wilson_interval(correct, n),
        malformed=[{"location": m.location, "reason": m.reason} for m in split.malformed], notes=list(split.notes),
        truncated=sum("truncated_tokens" in r.extra for r in results),
    )
    if mode == "loglik":
        out.acc_norm = sum(bool(r.correct_norm) for r in results) / n if n else 0.0
    else:
        out.unparsed_ids = [r.id for r in results if r.chosen is None]
        out.unparsed = len(out.unparsed_ids)
        out.ambiguous_ids = [r.id for r in results if r.parse_rule == "ambiguous"]
    return out


def average(results: list[TaskResult]) -> float:
    """Unweighted mean over tasks, as the paper's "Average" column."""
    return sum(r.acc for r in results) / len(results) if results else 0.0


def markdown_table(results: list[TaskResult], perplexities: dict | None = None) -> str:
    """One row per task and the average; held-out perplexities (model-wide) fill their columns on the
    average row."""
    perplexities = perplexities or {}
    loglik = any(r.mode == "loglik" for r in results)
    generate = any(r.mode == "generate" for r in results)
    head = ["Task", "Split", "Shots", "Items", "Accuracy (%)", "95% CI (Wilson)"]
    head += ["Acc norm (%)"] if loglik else []
    head += ["Unparsed"] if generate else []
    head += ["Malformed"]
    head += [f"PPL {name}" for name in perplexities]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in results:
        row = [r.task, r.split, str(r.num_fewshot), str(r.n), f"{100 * r.acc:.2f}",
               f"{100 * r.ci95[0]:.2f}–{100 * r.ci95[1]:.2f}"]
        row += [f"{100 * r.acc_norm:.2f}" if r.acc_norm is not None else "–"] if loglik else []
        row += [str(r.unparsed) if r.unparsed is not None else "–"] if generate else []
        row += [str(len(r.malformed))]
        row += ["–"] * len(perplexities)
        lines.append("| " + " | ".join(row) + " |")
    filler = [""] * (len(head) - 5 - len(perplexities))
    ppl = [f"{p['ppl']:.3f}" for p in perplexities.values()]
    lines.append("| " + " | ".join(["**Average**", "", "", str(sum(r.n for r in results)),
                                    f"**{100 * average(results):.2f}**", *filler, *ppl]) + " |")
    return "\n".join(lines) + "\n"


def write_samples(output_dir: Path, task: str, results: list[ItemResult]) -> Path:
    path = Path(output_dir) / f"samples_{task}.jsonl"
    write_text_atomic(path, "".join(json.dumps(r.to_json(), ensure_ascii=False) + "\n" for r in results))
    return path


def render_markdown(results: list[TaskResult], perplexities: dict | None = None) -> str:
    """The table followed by what a reader must know: loader notes, skipped records, truncated prompts."""
    notes = [f"- {r.task}: {note}" for r in results for note in r.notes]
    notes += [f"- {r.task}: {len(r.malformed)} malformed records skipped (listed in results.json)"
              for r in results if r.malformed]
    notes += [f"- {r.task}: {r.unparsed} generated answers unparseable, counted wrong (ids in results.json)"
              + (f"; {len(r.ambiguous_ids)} of them name several options: {', '.join(r.ambiguous_ids)}"
                 if r.ambiguous_ids else "")
              for r in results if r.unparsed]
    notes += [f"- {r.task}: {r.truncated} prompts truncated on the left to fit the model (see samples_{r.task}.jsonl)"
              for r in results if r.truncated]
    notes += [f"- PPL {name}: {p['tokens']} tokens of {p['file']} (held-out; compare across stages for forgetting)"
              for name, p in (perplexities or {}).items()]
    return markdown_table(results, perplexities) + ("\n" + "\n".join(notes) + "\n" if notes else "")


def write_report(output_dir: str | Path, results: list[TaskResult], run_config: dict,
                 perplexities: dict | None = None) -> tuple[Path, Path]:
    """Write ``results.json`` and ``results.md``; return their paths."""
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    payload = {
        "config": run_config,
        "ci_method": "wilson",
        "tasks": {r.task: r.__dict__ for r in results},
        "average": average(results),
        "perplexity": perplexities or {},
    }
    json_path, md_path = output_dir / "results.json", output_dir / "results.md"
    write_json_atomic(json_path, payload)
    write_text_atomic(md_path, render_markdown(results, perplexities))
    return json_path, md_path


def _mean_stderr(p: float, n: int):
    """lm-eval's ``mean_stderr`` of 0/1 outcomes: the sample standard deviation (n - 1) over sqrt(n)."""
    return math.sqrt(p * (1 - p) / (n - 1)) if n > 1 else "N/A"


def write_lm_eval_results(output_dir: str | Path, results: list[TaskResult], run_config: dict) -> Path:
    """``results_lm_eval.json`` in lm-evaluation-harness's layout (metric keys ``"<metric>,<filter>"``)."""
    out = {"results": {}, "n-shot": {}, "n-samples": {}, "higher_is_better": {}, "versions": {}}
    for r in results:
        metrics = {"alias": r.task, "acc,none": r.acc, "acc_stderr,none": _mean_stderr(r.acc, r.n)}
        if r.acc_norm is not None:
            metrics.update({"acc_norm,none": r.acc_norm, "acc_norm_stderr,none": _mean_stderr(r.acc_norm, r.n)})
        out["results"][r.task] = metrics
        out["n-shot"][r.task] = r.num_fewshot
        out["n-samples"][r.task] = {"original": r.n, "effective": r.n}
        out["higher_is_better"][r.task] = {k.split(",")[0]: True for k in metrics if "stderr" not in k and "," in k}
        out["versions"][r.task] = f"megapmc-{r.mode}"
    out["config"] = {"model": "megapmc", "model_args": run_config.get("model", {}), "limit": run_config.get("limit")}
    path = Path(output_dir) / "results_lm_eval.json"
    write_json_atomic(path, out)
    return path
