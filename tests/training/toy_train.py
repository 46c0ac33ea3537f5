"""A training run on generated token data, for the trainer tests: `python toy_train.py FLAGS` (under
torchrun for several ranks). Takes the trainer's flags (megapmc.training.arguments) plus --toy-* ones,
so the tests need no tokenizer or preprocessed data."""
from __future__ import annotations

import argparse
import sys

import torch

from megapmc.training.arguments import add_training_args, build_run_config, parse_args
from megapmc.training.trainer import TrainData, train


class ToyDataset(torch.utils.data.Dataset):
    """Random tokens with a learnable pattern (each token repeats the one two back); optional loss masks
    that keep a random number of target tokens, and NaN masks for chosen samples (to make NaN losses)."""

    def __init__(self, num_samples, seq_length, vocab, seed, masks=False, nan_samples=()):
        g = torch.Generator().manual_seed(seed)
        half = torch.randint(3, vocab, (num_samples, (seq_length + 2) // 2), generator=g)
        self.tokens = half.repeat_interleave(2, dim=1)[:, : seq_length + 1]
        self.masks = None
        if masks or nan_samples:
            keep = torch.randint(1, seq_length + 1, (num_samples,), generator=g)
            self.masks = (torch.arange(seq_length)[None, :] < keep[:, None]).float()
            for i in nan_samples:
                self.masks[i, 0] = float("nan")

    def __len__(self):
        return len(self.tokens)

    def __getitem__(self, i):
        item = {"tokens": self.tokens[i]}
        if self.masks is not None:
            item["loss_mask"] = self.masks[i]
        return item


def toy_loader(dataset, consumed_samples, micro_batch_size, global_batch_size, parallel, num_workers):
    """Megatron's pretraining sampler order: micro-batch j of DP rank r holds samples
    consumed + j·mbs·dp + r·mbs ... (+ mbs), wrapping around the dataset."""
    def batches():
        start = consumed_samples
        while True:
            first = start + parallel.dp_rank * micro_batch_size
            items = [dataset[(first + k) % len(dataset)] for k in range(micro_batch_size)]
            yield torch.utils.data.default_collate(items)
            start += micro_batch_size * parallel.dp_size
    return batches()


def main(argv=None):
    parser = add_training_args(argparse.ArgumentParser())
    parser.add_argument("--toy-samples", type=int, default=256)
    parser.add_argument("--toy-masks", action="store_true")
    parser.add_argument("--toy-nan-samples", type=int, nargs="*", default=[])
    args = parse_args(parser, argv)
    torch.set_num_threads(1)
    config = build_run_config(args, data_config=None)
    vocab = config.model.vocab_size

    def provider(cfg, parallel):
        train_ds = ToyDataset(args.toy_samples, cfg.training.seq_length, vocab, seed=0, masks=args.toy_masks,
                              nan_samples=args.toy_nan_samples)
        valid_ds = ToyDataset(64, cfg.training.seq_length, vocab, seed=1)
        return TrainData(train_ds, valid_ds, loader_builder=toy_loader)

    result = train(config, provider)
    print(f"RESULT {result.iteration} {result.exit_reason} {result.last_loss!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
