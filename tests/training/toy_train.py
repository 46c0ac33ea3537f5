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


def _die_in_save(iteration: int, point: str) -> None:
    """SIGKILL the whole job (torchrun, every worker) from rank 0 at ``point`` of the save of ``iteration``, as a
    node lost mid-save: after the model shard is written, before the manifest, or before the tracker."""
    import os
    import signal

    import megapmc.checkpoint.checkpointing as ck

    def kill_job():
        parent = os.getppid()
        for entry in os.listdir("/proc"):
            if entry.isdigit() and int(entry) != os.getpid():
                try:
                    with open(f"/proc/{entry}/stat") as f:
                        ppid = int(f.read().rsplit(")", 1)[1].split()[1])
                except (OSError, IndexError, ValueError):
                    continue
                if ppid == parent:
                    os.kill(int(entry), signal.SIGKILL)
        os.kill(parent, signal.SIGKILL)
        os.kill(os.getpid(), signal.SIGKILL)

    if os.environ.get("RANK", "0") != "0":
        return
    tag = f"iter_{iteration:07d}"
    if point == "model_shard":  # after rank 0's shard is written, while the other ranks still write theirs
        original_shard = ck.save_model_shard

        def save_model_shard(*args, **kwargs):
            path = original_shard(*args, **kwargs)
            if tag in str(path):
                kill_job()
            return path
        ck.save_model_shard = save_model_shard
    elif point == "manifest":  # every file durable, the manifest not yet written
        original_manifest = ck.write_manifest

        def write_manifest(ckpt_dir, it, *args, **kwargs):
            if it == iteration:
                kill_job()
            return original_manifest(ckpt_dir, it, *args, **kwargs)
        ck.write_manifest = write_manifest
    else:  # the directory renamed into place, the tracker not yet replaced
        original_write = ck.write_text_atomic

        def write_text_atomic(path, text, *args, **kwargs):
            if str(path).endswith(ck.TRACKER_NAME) and text.strip() == str(iteration):
                kill_job()
            return original_write(path, text, *args, **kwargs)
        ck.write_text_atomic = write_text_atomic


def main(argv=None):
    parser = add_training_args(argparse.ArgumentParser())
    parser.add_argument("--toy-samples", type=int, default=256)
    parser.add_argument("--toy-masks", action="store_true")
    parser.add_argument("--toy-nan-samples", type=int, nargs="*", default=[])
    parser.add_argument("--toy-slow-save", type=float, default=0.0,
                        help="seconds every save takes longer (a large model's save)")
    parser.add_argument("--toy-die-in-save", nargs=2, metavar=("ITERATION", "POINT"),
                        help="kill the job during that save: model_shard, manifest or tracker")
    args = parse_args(parser, argv)
    if args.toy_die_in_save:
        _die_in_save(int(args.toy_die_in_save[0]), args.toy_die_in_save[1])
    if args.toy_slow_save:
        import time

        import megapmc.training.trainer as trainer_module

        fast = trainer_module.save_checkpoint
        trainer_module.save_checkpoint = lambda *a, **k: (time.sleep(args.toy_slow_save), fast(*a, **k))[1]
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
