#!/usr/bin/env python
r"""Convert LLaMA checkpoints between Hugging Face, Meta and megapmc formats (any TP x PP size).

Examples:
  python tools/convert_checkpoint.py --loader hf --saver megapmc --load-dir llama-13b-hf \
      --save-dir ckpt/llama13b-tp4 --target-tensor-parallel-size 4 --verify
  python tools/convert_checkpoint.py --loader megapmc --saver megapmc --load-dir ckpt/llama13b-tp4 \
      --save-dir ckpt/llama13b-tp2-pp4 --target-tensor-parallel-size 2 --target-pipeline-parallel-size 4
  python tools/convert_checkpoint.py --loader megapmc --saver hf --load-dir runs/pmc/ckpt \
      --save-dir pmc-llama-13b-hf --tokenizer-model tokenizer.model --dtype bf16 --verify
"""
from __future__ import annotations

import argparse
import sys

from megapmc.convert import ConversionError, ConvertConfig, VerificationError, convert
from megapmc.convert.converter import DTYPES, LOADERS, SAVERS
from megapmc.model.config import PRESETS


def parse_args(argv=None) -> ConvertConfig:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--loader", choices=LOADERS, required=True)
    p.add_argument("--saver", choices=SAVERS, required=True)
    p.add_argument("--load-dir", required=True, help="HF dir, Meta dir, or megapmc run / iter_XXXXXXX dir")
    p.add_argument("--save-dir", required=True, help="must not exist; written as <save-dir>.tmp, then renamed")
    p.add_argument("--target-tensor-parallel-size", type=int, default=1, help="TP size of a megapmc output")
    p.add_argument("--target-pipeline-parallel-size", type=int, default=1,
                   help="PP size of a megapmc output: a model_tpXX_ppYYY file per (TP, PP) rank, as the trainer saves")
    p.add_argument("--decoder-first-pipeline-num-layers", type=int, help="layers of the first stage (uneven split)")
    p.add_argument("--decoder-last-pipeline-num-layers", type=int, help="layers of the last stage (uneven split)")
    p.add_argument("--num-layers-per-virtual-pipeline-stage", type=int,
                   help="interleaved layout: which layers each pipeline rank's file holds")
    p.add_argument("--tokenizer-model", help="tokenizer.model, tokenizer.json or tokenizer dir for an HF export (default: the source's)")
    p.add_argument("--dtype", choices=DTYPES, help="output dtype (default: bf16 for hf, fp32 for megapmc)")
    p.add_argument("--model-preset", choices=PRESETS, help="fail unless the source has this preset's shape")
    p.add_argument("--make-vocab-size-divisible-by", type=int, help="megapmc vocabulary padding multiple")
    p.add_argument("--max-shard-size-mb", type=int, default=5000, help="largest HF output safetensors file")
    p.add_argument("--added-tokens", nargs="*", default=[], help="tokens appended after the SentencePiece pieces")
    p.add_argument("--verify", action="store_true", help="compare logits of source and output; fail above tolerance")
    p.add_argument("--verify-tolerance", type=float, default=1e-3, help="relative to the largest logit")
    a = p.parse_args(argv)
    return ConvertConfig(
        loader=a.loader, saver=a.saver, load_dir=a.load_dir, save_dir=a.save_dir,
        target_tensor_parallel_size=a.target_tensor_parallel_size,
        target_pipeline_parallel_size=a.target_pipeline_parallel_size,
        decoder_first_pipeline_num_layers=a.decoder_first_pipeline_num_layers,
        decoder_last_pipeline_num_layers=a.decoder_last_pipeline_num_layers,
        num_layers_per_virtual_pipeline_stage=a.num_layers_per_virtual_pipeline_stage, dtype=a.dtype,
        tokenizer_model=a.tokenizer_model, model_preset=a.model_preset,
        make_vocab_size_divisible_by=a.make_vocab_size_divisible_by, max_shard_bytes=a.max_shard_size_mb * 10**6,
        added_tokens=a.added_tokens, verify=a.verify, verify_tolerance=a.verify_tolerance,
    )


def main(argv=None) -> int:
    try:
        out = convert(parse_args(argv))
    except (ConversionError, VerificationError) as e:
        print(f"convert_checkpoint: error: {e}", file=sys.stderr)
        return 1
    print(f"convert_checkpoint: wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
