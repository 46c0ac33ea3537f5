#!/usr/bin/env python
"""Evaluate a model on PubMedQA, MedMCQA and MedQA-USMLE; write results.json, results.md, samples_TASK.jsonl.

    # a Hugging Face directory (bf16 on CUDA, fp32 on the CPU)
    python tools/evaluate.py --hf-dir HF --tasks pubmedqa,medmcqa,medqa --data-dir DATA --output-dir OUT
    # a megapmc checkpoint at tensor-parallel size 2
    torchrun --nproc-per-node 2 tools/evaluate.py --load RUN --tensor-model-parallel-size 2 --output-dir OUT

--data-dir is searched recursively (default: the handmade sample items shipped with megapmc); each
task's file is recognised by name or by its fields, and what was found is printed:
    medqa           US/4_options/phrases_no_exclude_test.jsonl, or the GBaker/MedQA-USMLE-4-options-hf
                    export (sent1, ending0..3, label) as .jsonl/.parquet            (1,273 test items)
    medqa_5options  US/test.jsonl (5 options)
    medmcqa         dev.json (original, cop 1-based) or the HF validation split (.jsonl/.parquet, cop
                    0-based); the base is detected and stated; test.json has no answers and is refused
    pubmedqa        ori_pqal.json + test_ground_truth.json, or PQA-L rows (qiaojin/PubMedQA pqa_labeled:
                    pubid/question/context/final_decision; bigbio source: QUESTION/CONTEXTS) (500 items)
--medqa-file/--medmcqa-file/--pubmedqa-file name a file directly. Every task's file is read and validated
before the model is loaded; --strict stops at the first malformed record.

--ppl-files general=G.jsonl,medical=M.jsonl adds held-out perplexity columns (the forgetting check: run
it on the checkpoint of every stage). results_lm_eval.json holds the scores in lm-eval's JSON layout.
"""
import argparse

from megapmc.evaluation.evaluator import (
    DEFAULT_TASKS, DTYPES, MODES, SAMPLE_DATA_DIR, EvalConfig, build_backend, evaluate, prepare_tasks,
    render_markdown,
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
    p.add_argument("--medqa-file", help="the MedQA test file itself (any layout above), instead of searching")
    p.add_argument("--medmcqa-file", help="the MedMCQA dev/validation file itself")
    p.add_argument("--pubmedqa-file", help="ori_pqal.json (test_ground_truth.json beside it) or a PQA-L row file")
    p.add_argument("--strict", action="store_true", help="stop at the first malformed record instead of skipping it")
    p.add_argument("--ppl-files", default="",
                   help="NAME=PATH,...: held-out text (.jsonl with 'text', or plain) scored for perplexity")
    return p.parse_args(argv)


def _ppl_files(spec: str) -> dict[str, str]:
    out = {}
    for part in (x for x in spec.split(",") if x):
        name, sep, path = part.partition("=")
        if not sep or not name or not path:
            raise ValueError(f"--ppl-files {part!r}: expected NAME=PATH (e.g. general=held_out_general.jsonl)")
        out[name] = path
    return out


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
        seed=args.seed, medmcqa_cop_base=args.medmcqa_cop_base, strict=args.strict,
        task_files={name: path for name, path in (("medqa", args.medqa_file), ("medmcqa", args.medmcqa_file),
                                                  ("pubmedqa", args.pubmedqa_file)) if path},
        ppl_files=_ppl_files(args.ppl_files),
    )
    prepared = prepare_tasks(config)  # every file found and validated before the model is loaded
    backend, is_writer = build_backend(args.hf_dir, args.load, args.tokenizer, args.tensor_model_parallel_size,
                                       args.batch_size, args.dtype)
    model_info = {"hf_dir": args.hf_dir, "load": args.load, "tokenizer": args.tokenizer, "dtype": args.dtype,
                  "tensor_model_parallel_size": args.tensor_model_parallel_size}
    results, perplexities = evaluate(backend, config, write=is_writer, model_info=model_info, prepared=prepared)
    if is_writer:
        print(render_markdown(results, perplexities), end="")
        print(f"wrote {config.output_dir}/results.json, results.md, results_lm_eval.json, samples_<task>.jsonl")


if __name__ == "__main__":
    main()
