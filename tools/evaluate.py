#!/usr/bin/env python
"""Evaluate a model on PubMedQA, MedMCQA and MedQA-USMLE; write results.json, results.md, samples_TASK.jsonl.

    # a Hugging Face directory (bf16 on CUDA, fp32 on the CPU)
    python tools/evaluate.py --hf-dir HF --tasks pubmedqa,medmcqa,medqa --data-dir DATA --output-dir OUT
    # a megapmc checkpoint at tensor-parallel size 2
    torchrun --nproc-per-node 2 tools/evaluate.py --load RUN --tensor-model-parallel-size 2 --output-dir OUT

--data-dir holds the ORIGINAL files (default: the handmade sample items shipped with megapmc):
    medqa/US/4_options/phrases_no_exclude_test.jsonl   (+ _train.jsonl)   task medqa (1,273 test items)
    medqa/US/test.jsonl                                 (+ train.jsonl)    task medqa_5options
    medmcqa/dev.json                                    (+ train.json)     task medmcqa (4,183 items)
    pubmedqa/ori_pqal.json + pubmedqa/test_ground_truth.json               task pubmedqa (500 items)
"""
import argparse

from megapmc.evaluation.evaluator import (
    DEFAULT_TASKS, DTYPES, MODES, SAMPLE_DATA_DIR, EvalConfig, build_backend, evaluate, render_markdown,
)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    model = p.add_mutually_exclusive_group(required=True)
    model.add_argument("--hf-dir", help="Hugging Face model directory (config.json, weights, tokenizer)")
    model.add_argument("--load", help="megapmc checkpoint: run directory or iter_XXXXXXX directory")
    p.add_argument("--tokenizer", help="SentencePiece .model or tokenizer directory (default: the model's own)")
    p.add_argument("--tensor-model-parallel-size", type=int, default=1, help="TP size for --load (under torchrun)")
    p.add_argument("--tasks", default=",".join(DEFAULT_TASKS), help="comma-separated: pubmedqa,medmcqa,medqa,medqa_5options")
    p.add_argument("--data-dir", default=SAMPLE_DATA_DIR, help="directory of the original benchmark files (see above)")
    p.add_argument("--mode", choices=MODES, default="loglik",
                   help="loglik: lm-evaluation-harness scoring; generate: PMC-LLaMA's instruction prompt + parser")
    p.add_argument("--num-fewshot", type=int, default=0, help="examples from the training split (seeded)")
    p.add_argument("--limit", type=int, help="first N test items of each task")
    p.add_argument("--output-dir", required=True)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--max-new-tokens", type=int, default=1000,
                   help="generate mode: stops at EOS; 1000 as PMC-LLaMA's released inference, room for a rationale")
    p.add_argument("--dtype", choices=list(DTYPES), default="auto", help="auto: bf16 on CUDA, fp32 on the CPU")
    p.add_argument("--seed", type=int, default=1234, help="few-shot sampling seed")
    p.add_argument("--medmcqa-cop-base", type=int, choices=(0, 1),
                   help="MedMCQA's cop numbering (default: detected; 1 in the original files, 0 in the HF copy)")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    try:
        run(args)
    except (ValueError, FileNotFoundError) as e:  # bad flags or files: the message says what to fix
        raise SystemExit(f"error: {e}") from None


def run(args):
    config = EvalConfig(
        data_dir=args.data_dir, output_dir=args.output_dir, tasks=tuple(t for t in args.tasks.split(",") if t),
        mode=args.mode, num_fewshot=args.num_fewshot, limit=args.limit, max_new_tokens=args.max_new_tokens,
        seed=args.seed, medmcqa_cop_base=args.medmcqa_cop_base,
    )
    backend, is_writer = build_backend(args.hf_dir, args.load, args.tokenizer, args.tensor_model_parallel_size,
                                       args.batch_size, args.dtype)
    model_info = {"hf_dir": args.hf_dir, "load": args.load, "tokenizer": args.tokenizer, "dtype": args.dtype,
                  "tensor_model_parallel_size": args.tensor_model_parallel_size}
    results = evaluate(backend, config, write=is_writer, model_info=model_info)
    if is_writer:
        print(render_markdown(results), end="")
        print(f"wrote {config.output_dir}/results.json, results.md, samples_<task>.jsonl")


if __name__ == "__main__":
    main()
