"""Train a LLaMA-style SentencePiece tokenizer (BPE, unk 0, bos 1, eos 2, byte fallback) on JSONL text.

Used by the sample pipeline, where no LLaMA tokenizer may be downloaded:

    python tools/train_tokenizer.py --input a.jsonl b.jsonl --json-key text --vocab-size 1000 --output-prefix out/tokenizer
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

from megapmc.data.jsonl import read_jsonl


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--input", nargs="+", required=True, help="JSONL files (.jsonl, .jsonl.gz, .jsonl.zst)")
    p.add_argument("--json-key", default="text")
    p.add_argument("--vocab-size", type=int, default=1000)
    p.add_argument("--output-prefix", required=True, help="writes PREFIX.model and PREFIX.vocab")
    p.add_argument("--max-sentences", type=int, default=200_000, help="sentences sampled for training")
    args = p.parse_args(argv)

    import sentencepiece as spm

    out = Path(args.output_prefix)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        corpus = Path(tmp) / "corpus.txt"
        lines = 0
        with corpus.open("w") as f:
            for path in args.input:
                for _, record in read_jsonl(path):
                    text = record.get(args.json_key)
                    if isinstance(text, str):
                        for line in text.splitlines():
                            if line.strip():
                                f.write(line.strip() + "\n")
                                lines += 1
        if lines == 0:
            print(f"error: no '{args.json_key}' text found in {args.input}", file=sys.stderr)
            return 2
        # Train into the temporary folder, then move: a killed run leaves no half-written model.
        spm.SentencePieceTrainer.train(
            input=str(corpus), model_prefix=str(Path(tmp) / "tok"), vocab_size=args.vocab_size,
            model_type="bpe", unk_id=0, bos_id=1, eos_id=2, pad_id=-1, byte_fallback=True,
            character_coverage=1.0, input_sentence_size=args.max_sentences, shuffle_input_sentence=True,
            # As LLaMA's tokenizer: no NFKC, newlines and repeated spaces kept, so that the exported
            # Hugging Face tokenizer and this .model encode prompts identically.
            normalization_rule_name="identity", remove_extra_whitespaces=False,
            num_threads=2, minloglevel=2,
        )
        for suffix in (".model", ".vocab"):
            shutil.move(str(Path(tmp, "tok" + suffix)), out.with_suffix(suffix))
    print(f"wrote {out.with_suffix('.model')} (vocab {args.vocab_size}, trained on {lines} lines)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
