"""The PMC-LLaMA method and its ablation, in miniature, on the CPU, into one run folder.

    python examples/run_sample_pipeline.py [--run-dir runs/sample] [--quick] [--force]

A generated medical world (megapmc/sample_data/world, docs/ablation.md) gives the corpora, the MedC-I
sources and benchmark items about held-out facts. Steps (each skipped when already done with the same
command; see megapmc.pipeline):
  1. the world: books, papers, general text; MedC-I sources (training facts); MedQA/MedMCQA/PubMedQA files
  2. a LLaMA-style SentencePiece tokenizer trained on the corpora and the prompts' wording (no download)
  3. tokenise books, papers and general text into Megatron .bin/.idx shards (C++ builder)
  4. the data plan of the 15:4:1 books:papers:general blend
  5. the base model (standing in for LLaMA): pretrained on general text only, TP=2 under torchrun (gloo);
     every training run also leaves TensorBoard logs and run.png (loss, learning rate, throughput)
  6. knowledge injection from the base model, papers only (an ablation row)
  7. knowledge injection from the base model on the 15:4:1 blend (PMC-LLaMA's stage 1)
  8. MedC-I: conversations, rationale QA and UMLS prompts → instruction JSONL → tokens + loss masks
  9. instruction tuning of the base model alone (an ablation row), TP=2, loss on responses only
 10. instruction tuning after knowledge injection (PMC-LLaMA's stage 2)
 11. every model exported to Hugging Face (logits verified against the megapmc checkpoint)
 12. the ablation table: MedQA, MedMCQA, PubMedQA accuracy with 95% CI and held-out general-text perplexity
 13. the full recipe's model through the evaluator (tools/evaluate.py): lm-eval's prompts and scoring, and
     generation with the tuned prompt and PMC-LLaMA's answer parser
 14. 13-gram contamination check: the instruction data against the test items
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from megapmc.pipeline import Step, StepFailed, run_steps  # noqa: E402

PY = sys.executable
SOURCES = ("books", "papers", "general")


@dataclass(frozen=True)
class Scale:
    """Sizes chosen so that the main command fits in minutes on two cores (docs/ablation.md)."""

    num_diseases: int = 72
    vocab_size: int = 1024
    base_iters: int = 60
    ki_iters: int = 250
    base_lr: float = 3e-3
    ki_lr: float = 6e-3
    sft_epochs: int = 3
    seed: int = 1234
    papers_only_row: bool = True


FULL = Scale()
# The CI test's form: the same world and runs (a smaller world or shorter runs do not learn the facts),
# without the papers-only row.
QUICK = Scale(papers_only_row=False)
# The model: the tiny preset widened to hidden 128 (0.63M parameters with the 1024-piece vocabulary).
MODEL = ["--model", "tiny", "--hidden-size", "128", "--ffn-hidden-size", "352"]
TORCHRUN = ["torchrun", "--standalone", "--nproc-per-node", "2"]
# The ablation's rows: (name in the table, run folder of the checkpoint).
ROWS = [
    ("base (general text only)", "base"),
    ("base + instruction tuning", "it_only"),
    ("+ knowledge injection (papers only)", "ki_papers"),
    ("+ knowledge injection (15:4:1)", "ki"),
    ("+ knowledge injection + instruction tuning", "ki_it"),
]


def _pretrain(run: Path, name: str, data_path: list[str], iters: int, lr: float, scale: Scale,
              init: str | None) -> Step:
    out = run / name
    cmd = [*TORCHRUN, "-m", "megapmc.pretrain", *MODEL, "--tokenizer-model", str(run / "tokenizer.model"),
           "--tensor-model-parallel-size", "2", "--sequence-parallel", "--data-path", *data_path,
           "--split", "100,0,0", "--seq-length", "128", "--micro-batch-size", "16", "--global-batch-size", "16",
           "--train-iters", str(iters), "--lr", str(lr), "--min-lr", str(lr / 10), "--lr-decay-style", "cosine",
           "--lr-warmup-iters", "10", "--weight-decay", "0.0", "--clip-grad", "1.0", "--seed", str(scale.seed),
           "--save", str(out), "--load", str(out), "--save-interval", str(iters), "--log-interval", "25",
           "--eval-interval", "0", "--no-progress-bar"]
    if init:
        cmd += ["--pretrained-checkpoint", str(run / init)]
    source = "the 15:4:1 blend" if len(data_path) > 1 else Path(data_path[0]).name.removesuffix("_text_document")
    start = f"from '{init}'" if init else "from random weights"
    return Step(name, f"pretrain '{name}' {start} on {source} (TP=2 under torchrun)", [cmd, _plot(out)],
                outputs=[out])


def _finetune(run: Path, name: str, init: str, scale: Scale) -> Step:
    out = run / name
    cmd = [*TORCHRUN, "-m", "megapmc.finetune", *MODEL, "--tokenizer-model", str(run / "tokenizer.model"),
           "--tensor-model-parallel-size", "2", "--data-path", str(run / "medc_i" / "medc_i"), "--packing",
           "--seq-length", "256", "--micro-batch-size", "4", "--global-batch-size", "8",
           "--train-epochs", str(scale.sft_epochs), "--lr", "5e-4", "--min-lr", "5e-5", "--lr-decay-style", "cosine",
           "--lr-warmup-iters", "5", "--weight-decay", "0.0", "--clip-grad", "1.0", "--seed", str(scale.seed),
           "--save", str(out), "--load", str(out), "--save-interval", "100000", "--log-interval", "10",
           "--eval-interval", "0", "--no-progress-bar", "--pretrained-checkpoint", str(run / init)]
    return Step(name, f"instruction-tune '{init}' on MedC-I (TP=2, loss on responses only)", [cmd, _plot(out)],
                outputs=[out])


def _plot(out: Path) -> list[str]:
    """Loss, learning rate and throughput of a run as a PNG (TensorBoard logs are beside it)."""
    return [PY, "tools/plot_run.py", str(out), "--output", str(out / "run.png")]


# Runs a script once per argument list in one interpreter: torch and transformers are imported once, not
# once per model (each import costs seconds of CPU). The first failing run stops with its exit status.
_RUN_EACH = """import json, runpy, sys
script, argvs = sys.argv[1], json.loads(sys.argv[2])
for argv in argvs:
    sys.argv = [script, *argv]
    try:
        runpy.run_path(script, run_name="__main__")
    except SystemExit as e:
        if e.code:
            raise
"""


def _in_one_process(script: str, argvs: list[list[str]]) -> list[str]:
    return [PY, "-c", _RUN_EACH, script, json.dumps(argvs)]


def build_steps(run: Path, scale: Scale) -> list[Step]:
    rows = [r for r in ROWS if scale.papers_only_row or r[1] != "ki_papers"]
    world, data, tok = run / "world", run / "data", run / "tokenizer.model"
    corpus = {s: world / "corpus" / f"{s}.jsonl" for s in SOURCES}
    prefix = {s: str(data / f"{s}_text_document") for s in SOURCES}
    blend = ["15", prefix["books"], "4", prefix["papers"], "1", prefix["general"]]
    bench, medc_i, hf = world / "benchmarks", world / "medc_i", run / "hf"
    return [
        Step("world", "generate the world: corpora, MedC-I sources, benchmark items", [
            [PY, "-m", "megapmc.sample_data.world", "--output-dir", str(world), "--seed", str(scale.seed),
             "--num-diseases", str(scale.num_diseases)],
        ], outputs=[world]),
        Step("tokenizer", "train a LLaMA-style SentencePiece tokenizer on the corpora and the prompts' wording", [
            [PY, "tools/train_tokenizer.py", "--input", *map(str, corpus.values()),
             str(world / "tokenizer" / "prompts.jsonl"), "--vocab-size",
             str(scale.vocab_size), "--output-prefix", str(run / "tokenizer")],
        ]),
        Step("preprocess", "tokenise books, papers and general text into indexed datasets", [
            [PY, "tools/preprocess_data.py", "--input", str(corpus[s]), "--output-prefix", str(data / s),
             "--tokenizer-model", str(tok), "--append-eod", "--workers", "1", "--no-progress"]
            for s in SOURCES
        ], outputs=[data]),
        Step("data_plan", "data plan of the 15:4:1 blend", [
            [PY, "tools/data_plan.py", "--data-path", *blend, "--split", "100,0,0", "--seq-length", "128",
             "--global-batch-size", "16", "--train-iters", str(scale.ki_iters)],
        ]),
        _pretrain(run, "base", [prefix["general"]], scale.base_iters, scale.base_lr, scale, None),
        *([_pretrain(run, "ki_papers", [prefix["papers"]], scale.ki_iters, scale.ki_lr, scale, "base")]
          if scale.papers_only_row else []),
        _pretrain(run, "ki", blend, scale.ki_iters, scale.ki_lr, scale, "base"),
        Step("medc_i", "MedC-I: build the instruction data from training facts, tokenise with loss masks", [
            [PY, "tools/build_instruction_data.py", "--output", str(run / "medc_i" / "medc_i.jsonl"),
             "--conversations", str(medc_i / "conversations.json"),
             "--instruction-pool", str(medc_i / "instruction_pool.json"),
             "--medqa", str(bench / "medqa/US/4_options/phrases_no_exclude_train.jsonl"),
             "--medmcqa", str(bench / "medmcqa/train.json"), "--pubmedqa", str(bench / "pubmedqa/ori_pqal.json"),
             "--pubmedqa-exclude", str(bench / "pubmedqa/test_ground_truth.json"),
             "--rationales", str(medc_i / "rationales.jsonl"), "--umls-dir", str(medc_i / "umls"),
             "--tokenizer-model", str(tok), "--seed", str(scale.seed), "--no-progress-bar"],
            [PY, "tools/preprocess_sft.py", "--input", str(run / "medc_i" / "medc_i.jsonl"), "--tokenizer-model",
             str(tok), "--output-prefix", str(run / "medc_i" / "medc_i"), "--redraw-epochs", str(scale.sft_epochs),
             "--seed", str(scale.seed), "--no-progress-bar"],
        ], outputs=[run / "medc_i"]),
        _finetune(run, "it_only", "base", scale),
        _finetune(run, "ki_it", "ki", scale),
        Step("export_hf", "export every model to Hugging Face (logits verified)", [
            # The converter refuses an existing --save-dir: a rerun after an interruption starts afresh.
            [PY, "-c", "import shutil, sys; shutil.rmtree(sys.argv[1], ignore_errors=True)", str(hf)],
            _in_one_process("tools/convert_checkpoint.py", [
                ["--loader", "megapmc", "--saver", "hf", "--load-dir", str(run / folder), "--save-dir", str(hf / folder),
                 "--tokenizer-model", str(tok), "--dtype", "fp32", "--verify"] for _, folder in rows]),
        ], outputs=[hf]),
        Step("ablation", "the ablation table: three benchmarks with 95% CI, forgetting on general text", [
            [PY, "tools/ablation_table.py", *(a for name, folder in rows for a in ("--row", f"{name}={hf / folder}")),
             "--data-dir", str(bench), "--heldout-general", str(world / "heldout" / "general.jsonl"),
             "--output-dir", str(run / "ablation")],
        ], outputs=[run / "ablation"]),
        Step("evaluate", "the full recipe's model through tools/evaluate.py: lm-eval scoring and the tuned prompt", [
            [PY, "tools/evaluate.py", "--hf-dir", str(hf / "ki_it"), "--tasks", "pubmedqa,medmcqa,medqa",
             "--data-dir", str(bench), "--mode", mode, *extra, "--output-dir", str(run / "evaluate" / mode),
             "--ppl-files", f"general={world / 'heldout' / 'general.jsonl'}"]
            for mode, extra in (("loglik", []), ("generate", ["--max-new-tokens", "40"]))
        ], outputs=[run / "evaluate"]),
        Step("contamination", "13-gram contamination check: instruction data vs the test items", [
            [PY, "tools/check_contamination.py", "--train", str(run / "medc_i" / "medc_i.jsonl"),
             "--data-dir", str(bench), "--output-dir", str(run / "contamination")],
        ], outputs=[run / "contamination"]),
    ]


def summarise(run: Path) -> None:
    print("\n" + "=" * 78)
    for title, path in [("Ablation (zero-shot, instruction prompt, options ranked by log-likelihood)",
                         run / "ablation" / "ablation.md"),
                        ("Contamination of the instruction data", run / "contamination" / "contamination.md")]:
        print(f"\n## {title}\n")
        print(path.read_text().strip() if path.is_file() else f"(missing: {path})")
    print(f"\nPlot: {run / 'ablation' / 'ablation.png'}\nEverything is in {run}/ (logs/ holds each step's output).")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run-dir", type=Path, default=REPO / "runs" / "sample")
    p.add_argument("--quick", action="store_true", help="without the papers-only row (the CI test's form)")
    p.add_argument("--force", action="store_true", help="redo every step")
    args = p.parse_args(argv)
    run = args.run_dir.resolve()
    # One thread per process: the two gloo ranks share two cores, and a tiny model gains nothing from a
    # second thread anyway (on a busy machine, spinning OpenMP threads cost 5-10x the CPU time).
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    try:
        run_steps(build_steps(run, QUICK if args.quick else FULL), run, cwd=REPO, force=args.force)
    except StepFailed as e:
        print(f"\nsample pipeline stopped: {e}", file=sys.stderr)
        return 1
    summarise(run)
    return 0


if __name__ == "__main__":
    sys.exit(main())
