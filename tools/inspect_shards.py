#!/usr/bin/env python
"""Summarise materialised blended shards, verify their checksums, and show samples as text with their source.

    python tools/inspect_shards.py OUT                       # summary (OUT or OUT.manifest.json)
    python tools/inspect_shards.py OUT --verify              # SHA-256 of every shard file
    python tools/inspect_shards.py OUT --sample 0 7 --tokenizer-model tokenizer.model
"""
import argparse
import sys

from megapmc.data.config import manifest_path_for
from megapmc.data.materialized_dataset import MaterializedDataset, expand_batch_counts, load_manifest, verify_shards


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("path", help="the output prefix or its manifest")
    parser.add_argument("--verify", action="store_true", help="check every shard file's SHA-256")
    parser.add_argument("--sample", type=int, nargs="*", default=[], help="sample numbers to show")
    parser.add_argument("--tokenizer-model", help="SentencePiece model (or tokenizer.json) to decode samples")
    parser.add_argument("--max-chars", type=int, default=400)
    args = parser.parse_args(argv)
    manifest_path = manifest_path_for(args.path) or args.path
    manifest = load_manifest(manifest_path)
    names = manifest["sources"]
    counts = expand_batch_counts(manifest["batch_counts"])
    print(f"{manifest_path}: {manifest['num_samples']:,} samples of {manifest['seq_length'] + 1} tokens "
          f"({manifest['dtype']}), {len(manifest['shards'])} shards, {counts.shape[0]:,} global batches of "
          f"{manifest['global_batch_size']}")
    print("settings: " + ", ".join(f"{k}={v}" for k, v in manifest["settings"].items()))
    for name in names:
        print(f"  {name}: {manifest['source_samples'][name]:,} samples, {manifest['source_tokens'][name]:,} tokens")
    print("per-batch counts (" + "/".join(names) + "): " +
          "; ".join(f"{'/'.join(map(str, row))} x{n}" for row, n in manifest["batch_counts"][:8]) +
          (" ..." if len(manifest["batch_counts"]) > 8 else ""))
    status = 0
    if args.verify:
        problems = verify_shards(manifest_path, progress=True)
        for p in problems:
            print(f"FAILED {p}")
        print("checksums: " + ("all match" if not problems else f"{len(problems)} problems"))
        status = 1 if problems else 0
    if args.sample:
        dataset = MaterializedDataset(manifest_path)
        decode = None
        if args.tokenizer_model:
            from megapmc.data.tokenizer import build_tokenizer

            decode = build_tokenizer(args.tokenizer_model).decode
        tokens, sources = dataset.get_tokens(args.sample), dataset.sources_of(args.sample)
        for i, toks, src in zip(args.sample, tokens, sources):
            body = decode(toks.tolist()) if decode else " ".join(map(str, toks[:64].tolist())) + " ..."
            print(f"--- sample {i} (global batch {i // manifest['global_batch_size']}) from {names[src]} ---")
            print(body[: args.max_chars])
    sys.exit(status)


if __name__ == "__main__":
    try:
        main()
    except (ValueError, FileNotFoundError, IndexError) as e:  # bad path or sample number
        sys.exit(f"error: {e}")
