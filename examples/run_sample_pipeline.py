"""The whole PMC-LLaMA method on the embedded sample data, on the CPU, into one run folder.

    python examples/run_sample_pipeline.py [--run-dir runs/sample] [--quick] [--force]

Steps (each skipped when already done with the same command; see megapmc.pipeline):
  1. MedC-K corpus: clean the sample books, keep the S2ORC papers with a PMC id
  2. a LLaMA-style SentencePiece tokenizer trained on that corpus (no download)
  3. tokenise the three sources into Megatron .bin/.idx shards (C++ builder)
  4. the data plan of the 15:4:1 books:papers:general blend
  5. knowledge injection: the tiny LLaMA with TP=2 under torchrun (gloo), loss on every token
  6. MedC-I: conversations, rationale QA and UMLS prompts → instruction tuning (TP=2, response-only loss)
  7. export the tuned checkpoint to Hugging Face (with a logits check)
  8. evaluation on PubMedQA, MedMCQA and MedQA-USMLE: log-likelihood and zero-shot generation
  9. n-gram contamination check of the training data against the test items
 10. PNG plots of both training runs, and the result tables
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from megapmc.pipeline import Step, StepFailed, run_steps  # noqa: E402

SAMPLES = "megapmc/sample_data"
PY = sys.executable


def build_steps(run: Path, quick: bool) -> list[Step]:
    corpus, data = run / "corpus", run / "data"
    tokenizer = run / "tokenizer.model"
    pretrain_iters = 40 if quick else 150
    sft_epochs = 2 if quick else 30
    prefixes = {s: data / f"{s}_text_document" for s in ("books", "papers", "general")}
    blend = ["15", str(prefixes["books"]), "4", str(prefixes["papers"]), "1", str(prefixes["general"])]
    hf_dir = run / "hf_model"
    eval_dir = run / "eval"
    return [
        Step("corpus", "MedC-K corpus: clean books, filter S2ORC papers by PMC id", [
            [PY, "tools/clean_books.py", "--input", f"{SAMPLES}/pretrain/books.jsonl",
             "--output", str(corpus / "books.jsonl"), "--report", str(corpus / "books_cleaning.json")],
            [PY, "tools/filter_s2orc.py", "--input", f"{SAMPLES}/pretrain/s2orc_sample.jsonl",
             "--output", str(corpus / "papers.jsonl")],
            [PY, "-c", "import shutil, sys; shutil.copy(sys.argv[1], sys.argv[2])",
             f"{SAMPLES}/pretrain/general.jsonl", str(corpus / "general.jsonl")],
        ], outputs=[corpus]),
        Step("tokenizer", "train a LLaMA-style SentencePiece tokenizer on the corpus", [
            [PY, "tools/train_tokenizer.py", "--input", *(str(corpus / f"{s}.jsonl") for s in prefixes),
             "--vocab-size", "512", "--output-prefix", str(run / "tokenizer")],
        ]),
        Step("preprocess", "tokenise books, papers and general text into indexed datasets", [
            [PY, "tools/preprocess_data.py", "--input", str(corpus / f"{s}.jsonl"),
             "--output-prefix", str(data / s), "--tokenizer-model", str(tokenizer), "--append-eod",
             "--workers", "2"]
            for s in prefixes
        ], outputs=[data]),
        Step("data_plan", "data plan of the 15:4:1 blend", [
            [PY, "tools/data_plan.py", "--data-path", *blend, "--split", "80,20,0", "--seq-length", "128",
             "--global-batch-size", "16", "--train-iters", str(pretrain_iters)],
        ]),
        Step("pretrain", "knowledge injection: tiny LLaMA, TP=2 under torchrun, 15:4:1 blend", [
            ["bash", "examples/pretrain_tiny_cpu.sh"],
        ], env={
            "OUT": str(run / "pretrain"), "TRAIN_ITERS": str(pretrain_iters), "TOKENIZER_MODEL": str(tokenizer),
            "BOOKS_PREFIX": str(prefixes["books"]), "PAPERS_PREFIX": str(prefixes["papers"]),
            "GENERAL_PREFIX": str(prefixes["general"]),
        }, outputs=[run / "pretrain"]),
        Step("instruction_tuning", "MedC-I: build instruction data, instruction-tune (TP=2, response-only loss)", [
            ["bash", "examples/finetune_tiny_cpu.sh"],
            [PY, "tools/plot_run.py", str(run / "sft" / "checkpoints"), "--output", str(run / "sft_run.png")],
        ], env={
            "RUN_DIR": str(run / "sft"), "PRETRAINED_CKPT": str(run / "pretrain" / "checkpoints"),
            "TOKENIZER_MODEL": str(tokenizer), "TP": "2", "TRAIN_EPOCHS": str(sft_epochs),
        }, outputs=[run / "sft", run / "sft_run.png"]),
        Step("export_hf", "export the instruction-tuned model to Hugging Face (logits verified)", [
            # The converter refuses an existing --save-dir: a rerun after an interruption starts it afresh.
            [PY, "-c", "import shutil, sys; shutil.rmtree(sys.argv[1], ignore_errors=True)", str(hf_dir)],
            [PY, "tools/convert_checkpoint.py", "--loader", "megapmc", "--saver", "hf",
             "--load-dir", str(run / "sft" / "checkpoints"), "--save-dir", str(hf_dir),
             "--tokenizer-model", str(tokenizer), "--dtype", "fp32", "--verify"],
        ], outputs=[hf_dir]),
        Step("evaluate", "PubMedQA, MedMCQA, MedQA-USMLE: log-likelihood and zero-shot generation", [
            [PY, "tools/evaluate.py", "--hf-dir", str(hf_dir), "--tasks", "pubmedqa,medmcqa,medqa",
             "--mode", "loglik", "--output-dir", str(eval_dir / "loglik")],
            [PY, "tools/evaluate.py", "--hf-dir", str(hf_dir), "--tasks", "pubmedqa,medmcqa,medqa",
             "--mode", "generate", "--max-new-tokens", "48", "--output-dir", str(eval_dir / "generate")],
        ], outputs=[eval_dir]),
        Step("contamination", "13-gram contamination check: training data vs test items", [
            [PY, "tools/check_contamination.py", "--train", str(run / "sft" / "data" / "medc_i.jsonl"),
             *(str(corpus / f"{s}.jsonl") for s in prefixes), "--output-dir", str(run / "contamination")],
        ], outputs=[run / "contamination"]),
    ]


def summarise(run: Path) -> None:
    print("\n" + "=" * 78)
    for title, path in [
        ("Zero-shot, log-likelihood scoring", run / "eval" / "loglik" / "results.md"),
        ("Zero-shot, instruction prompt + generation", run / "eval" / "generate" / "results.md"),
        ("Contamination", run / "contamination" / "contamination.md"),
    ]:
        print(f"\n## {title}\n")
        print(path.read_text().strip() if path.is_file() else f"(missing: {path})")
    print(f"\nTraining curves: {run / 'pretrain' / 'run.png'} (knowledge injection), {run / 'sft_run.png'} "
          f"(instruction tuning)\nEverything is in {run}/ (logs/ holds each step's output).")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run-dir", type=Path, default=REPO / "runs" / "sample")
    p.add_argument("--quick", action="store_true", help="fewer iterations (the CI test's form)")
    p.add_argument("--force", action="store_true", help="redo every step")
    args = p.parse_args(argv)
    run = args.run_dir.resolve()
    try:
        run_steps(build_steps(run, args.quick), run, cwd=REPO, force=args.force)
    except StepFailed as e:
        print(f"\nsample pipeline stopped: {e}", file=sys.stderr)
        return 1
    summarise(run)
    return 0


if __name__ == "__main__":
    sys.exit(main())
