"""Log-likelihood evaluation throughput: megapmc's evaluator against lm-evaluation-harness, same run.

Same tiny random ``LlamaForCausalLM`` (saved once, imported into a megapmc checkpoint), same tokenizer
(a SentencePiece model trained on the spot), same items (the shipped sample items of PubMedQA, MedMCQA
and MedQA, ``--copies`` variants of each, numbered so none repeats), same batch size, fp32 on the CPU. Measured per task and in total:

- ``megapmc``: ``score_loglik`` on ``MegapmcBackend``: prompts rendered and tokenized, one forward per
  item for the shared context (KV cache), choices scored from it;
- ``lm-eval``: lm-eval's own ``HFLM.loglikelihood`` on the same (context, continuation) requests (its
  model-side work only: task building and dataset loading are not counted against it).

The two alternate repeat by repeat (medians reported); the script checks they agree within 1e-4.

    python benchmarks/bench_eval.py [--copies 8 --hidden-size 256 --num-layers 4 --batch-size 8] [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--copies", type=int, default=8, help="times the sample items are repeated")
    p.add_argument("--hidden-size", type=int, default=256)
    p.add_argument("--num-layers", type=int, default=4)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--json", help="also write the results here")
    return p.parse_args(argv)


def _items(copies: int):
    from megapmc.evaluation.evaluator import SAMPLE_DATA_DIR
    from megapmc.evaluation.tasks import TASKS

    out = {}
    for name in ("pubmedqa", "medmcqa", "medqa"):
        base = TASKS[name].load(SAMPLE_DATA_DIR, "test").items
        # Each copy's question differs, so no item repeats another: lm-eval scores a repeated request
        # once, which would measure deduplication rather than scoring.
        out[name] = [replace(it, id=f"{it.id}#{k}", question=f"[{k}] {it.question}") for k in range(copies) for it in base]
    return out


def main(argv=None) -> dict:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    from lm_eval.api.instance import Instance
    from lm_eval.models.huggingface import HFLM
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from megapmc.convert import import_from_hf
    from megapmc.evaluation.backends import HFTokenizer, MegapmcBackend
    from megapmc.evaluation.fewshot import FewShotSampler
    from megapmc.evaluation.prompts import TARGET_DELIMITER
    from megapmc.evaluation.scoring import score_loglik
    from megapmc.evaluation.tasks import TASKS
    from megapmc.testing.fixtures import train_sentencepiece

    tmp = Path(tempfile.mkdtemp(prefix="bench_eval_"))
    try:
        hf_dir = tmp / "hf"
        torch.manual_seed(0)
        config = LlamaConfig(vocab_size=512, hidden_size=args.hidden_size, intermediate_size=args.hidden_size * 8 // 3,
                             num_hidden_layers=args.num_layers, num_attention_heads=max(1, args.hidden_size // 64),
                             num_key_value_heads=max(1, args.hidden_size // 64), max_position_embeddings=2048,
                             bos_token_id=1, eos_token_id=2, tie_word_embeddings=False)
        model = LlamaForCausalLM(config).eval()
        model.save_pretrained(hf_dir)
        shutil.copy(train_sentencepiece(tmp / "spm"), hf_dir / "tokenizer.model")
        tokenizer = AutoTokenizer.from_pretrained(hf_dir, add_bos_token=True)
        ckpt = import_from_hf(hf_dir, tmp / "megapmc", tp=1, dtype="fp32")
        ours = MegapmcBackend.from_checkpoint(ckpt, tokenizer=HFTokenizer(tokenizer), batch_size=args.batch_size,
                                              device=torch.device("cpu"), dtype=torch.float32, show_progress=False)
        harness = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=args.batch_size, add_bos_token=True,
                       device="cpu")
        rows, totals = [], {"megapmc": 0.0, "lm-eval": 0.0, "items": 0}
        for name, items in _items(args.copies).items():
            task = TASKS[name]
            requests = [Instance("loglikelihood", {}, (task.harness_prompt(it), TARGET_DELIMITER + c), k)
                        for it in items for k, c in enumerate(task.harness_choices(it))]
            times = {"megapmc": [], "lm-eval": []}
            for _ in range(args.repeats):
                start = time.perf_counter()
                mine = score_loglik(ours, task, items, FewShotSampler([], 0))
                times["megapmc"].append(time.perf_counter() - start)
                start = time.perf_counter()
                theirs = harness.loglikelihood(requests, disable_tqdm=True)
                times["lm-eval"].append(time.perf_counter() - start)
            flat = [ll for r in mine for ll in r.loglikelihoods]
            worst = max(abs(a - b[0]) for a, b in zip(flat, theirs))
            if worst > 1e-4:
                raise SystemExit(f"{name}: megapmc and lm-eval disagree by {worst:.2e}")
            med = {k: statistics.median(v) for k, v in times.items()}
            rows.append({"task": name, "items": len(items), "choices": len(requests),
                         "megapmc_items_per_s": len(items) / med["megapmc"],
                         "lm_eval_items_per_s": len(items) / med["lm-eval"],
                         "speedup": med["lm-eval"] / med["megapmc"], "max_abs_diff": worst})
            totals["megapmc"] += med["megapmc"]
            totals["lm-eval"] += med["lm-eval"]
            totals["items"] += len(items)
        rows.append({"task": "all", "items": totals["items"], "choices": sum(r["choices"] for r in rows),
                     "megapmc_items_per_s": totals["items"] / totals["megapmc"],
                     "lm_eval_items_per_s": totals["items"] / totals["lm-eval"],
                     "speedup": totals["lm-eval"] / totals["megapmc"], "max_abs_diff": max(r["max_abs_diff"] for r in rows)})
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"model: hidden {args.hidden_size}, {args.num_layers} layers, vocab 512, fp32 CPU, "
          f"batch {args.batch_size}, threads {torch.get_num_threads()}, median of {args.repeats}")
    print("| Task | Items | Choices | megapmc items/s | lm-eval items/s | Speed-up | Max abs diff |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['task']} | {r['items']} | {r['choices']} | {r['megapmc_items_per_s']:.1f} | "
              f"{r['lm_eval_items_per_s']:.1f} | {r['speedup']:.2f}x | {r['max_abs_diff']:.1e} |")
    result = {"args": vars(args), "rows": rows}
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
