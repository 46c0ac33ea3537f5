"""Preprocessing throughput: tools/preprocess_data.py against the raw tokenizer on the same text and cores.

The raw baseline is the tokenizer's own batch encoder over texts already in memory (no file reading, no
JSON, no writing), at ``n`` threads; the tool runs end to end (read, parse, tokenize in ``n`` worker
processes, write the indexed dataset) with ``--workers n``. Target: the tool reaches at least 0.9 of the
raw tokens/s at the same ``n``. Each number is the best of ``repeats`` interleaved runs, because a shared
machine's load changes from second to second. Tokens per CPU-second (user + system time of this process
and its workers) are reported too: on a loaded machine they measure the tool's own overhead, which
wall-clock time cannot separate from the neighbours' load.

    python benchmarks/bench_preprocess.py [--tokenizer-model tokenizer.model] [--copies 100] [--repeats 3]
"""
from __future__ import annotations

import argparse
import json
import resource
import tempfile
import time
from pathlib import Path

SAMPLES = Path(__file__).resolve().parents[1] / "megapmc" / "sample_data" / "pretrain"


def _corpus(out_dir: Path, copies: int) -> tuple[Path, list[str]]:
    """The embedded books, papers and general text, ``copies`` times over, as one JSONL file."""
    texts = []
    for name in ("books.jsonl", "papers.jsonl", "general.jsonl"):
        texts += [json.loads(line)["text"] for line in (SAMPLES / name).read_text().splitlines() if line.strip()]
    texts = texts * copies
    path = out_dir / "corpus.jsonl"
    with open(path, "w") as f:
        for t in texts:
            f.write(json.dumps({"text": t}) + "\n")
    return path, texts


def _train_tokenizer(out_dir: Path, texts: list[str]) -> Path:
    import sentencepiece as spm

    corpus = out_dir / "spm.txt"
    corpus.write_text("\n".join(t.replace("\n", " ") for t in texts))
    spm.SentencePieceTrainer.train(input=str(corpus), model_prefix=str(out_dir / "tokenizer"), vocab_size=2000,
                                   model_type="bpe", unk_id=0, bos_id=1, eos_id=2, pad_id=-1, byte_fallback=True,
                                   character_coverage=1.0, num_threads=1, minloglevel=2)
    return out_dir / "tokenizer.model"


def _cpu_seconds() -> float:
    """User + system CPU time of this process and its reaped children so far."""
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def bench_preprocess_rows(tokenizer_model: str | None = None, copies: int = 100, repeats: int = 3,
                          workers: tuple[int, ...] = (1, 2)) -> list[dict]:
    """Rows ``{"benchmark", "setting", "tokens_per_s", "seconds", "vs_raw", "tokens_per_cpu_s", "cpu_vs_raw"}``.

    One raw-tokenizer row then one tool row per worker count; ``vs_raw`` compares wall-clock tokens/s,
    ``cpu_vs_raw`` tokens per CPU-second.
    """
    from megapmc.data.preprocess import PreprocessConfig, preprocess
    from megapmc.data.tokenizer import build_tokenizer

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp_dir = Path(tmp)
        corpus, texts = _corpus(tmp_dir, copies)
        model = tokenizer_model or str(_train_tokenizer(tmp_dir, texts[: len(texts) // copies]))
        tok = build_tokenizer(model)
        num_tokens = int(tok.encode_batch_flat(texts, num_threads=2)[1].sum())
        for n in workers:
            raw, tool, raw_cpu, tool_cpu = [], [], [], []
            for r in range(repeats):
                c0, t0 = _cpu_seconds(), time.perf_counter()
                tok.encode_batch_flat(texts, num_threads=n)
                raw.append(time.perf_counter() - t0)
                raw_cpu.append(_cpu_seconds() - c0)
                cfg = PreprocessConfig(input=str(corpus), output_prefix=str(tmp_dir / f"out{n}_{r}"),
                                       tokenizer_model=model, workers=n, progress=False)
                c0 = _cpu_seconds()
                summary = preprocess(cfg)
                tool_cpu.append(_cpu_seconds() - c0)
                assert summary.tokens["text"] == num_tokens, "the tool and the raw tokenizer saw different text"
                tool.append(summary.seconds)
            raw_tps, tool_tps = num_tokens / min(raw), num_tokens / min(tool)
            raw_tpc, tool_tpc = num_tokens / min(raw_cpu), num_tokens / min(tool_cpu)
            rows.append({"benchmark": "preprocess", "setting": f"raw tokenizer, {n} thread(s)",
                         "tokens_per_s": raw_tps, "seconds": min(raw), "vs_raw": 1.0,
                         "tokens_per_cpu_s": raw_tpc, "cpu_vs_raw": 1.0})
            rows.append({"benchmark": "preprocess", "setting": f"preprocess_data.py --workers {n}",
                         "tokens_per_s": tool_tps, "seconds": min(tool), "vs_raw": tool_tps / raw_tps,
                         "tokens_per_cpu_s": tool_tpc, "cpu_vs_raw": tool_tpc / raw_tpc})
    return rows


def format_rows(rows: list[dict]) -> str:
    lines = [f"{'setting':<34}{'tokens/s':>11}{'seconds':>9}{'vs raw':>8}{'tokens/CPU-s':>14}{'vs raw':>8}"]
    lines += [f"{r['setting']:<34}{r['tokens_per_s']:>11,.0f}{r['seconds']:>9.2f}{r['vs_raw']:>8.2f}"
              f"{r['tokens_per_cpu_s']:>14,.0f}{r['cpu_vs_raw']:>8.2f}" for r in rows]
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tokenizer-model", help="default: a SentencePiece BPE (vocab 2000) trained on the samples")
    p.add_argument("--copies", type=int, default=100,
                   help="copies of the sample corpus to tokenize (100: ~5M tokens, so pool start-up is amortised as on real data)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    args = p.parse_args()
    rows = bench_preprocess_rows(args.tokenizer_model, args.copies, args.repeats, tuple(args.workers))
    print(format_rows(rows))


if __name__ == "__main__":
    main()
