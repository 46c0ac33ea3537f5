"""Pipelined training equals one process: PP=2, PP=4 (with an uneven split), TP2 x PP2 (sequence
parallel), PP2 x DP2 (distributed optimizer) and interleaved PP2 x 2 virtual stages give the losses and
the clipped gradient norms of the one-process run within 1e-6 relative after 3 steps, and its weights
within 1e-6 elementwise (with TP or DP: the weights of the same layout without pipelining; see below).

Samples carry loss masks with different token counts, so the loss is checked as the token mean over the
global batch however micro-batches fall on stages and DP ranks; the gradient norm exceeds --clip-grad,
so clipping (the norm summed over every stage) shapes the weights."""
import argparse

import pytest
import torch

from megapmc.parallel.state import ParallelState, initialize_parallel
from megapmc.pipeline_parallel.stage import model_chunks
from megapmc.testing.distributed import local_slices, run_distributed
from megapmc.training.arguments import add_training_args, build_run_config
from megapmc.training.trainer import TrainData, Trainer

STEPS = 3
FLAGS = ["--model", "tiny", "--num-layers", "4", "--vocab-size", "128", "--seq-length", "16", "--lr", "3e-3",
         "--eval-iters", "2",
         "--micro-batch-size", "1", "--global-batch-size", "8", "--train-iters", str(STEPS), "--clip-grad", "0.5",
         "--no-progress-bar", "--no-exit-signal-handler"]
REL = 1e-6


class MaskedTokens(torch.utils.data.Dataset):
    """Random tokens; each sample's loss mask keeps a random number of leading targets."""

    def __init__(self, num_samples=64, seq_length=16, vocab=128, seed=0):
        g = torch.Generator().manual_seed(seed)
        self.tokens = torch.randint(0, vocab, (num_samples, seq_length + 1), generator=g)
        keep = torch.randint(1, seq_length + 1, (num_samples,), generator=g)
        self.masks = (torch.arange(seq_length)[None, :] < keep[:, None]).float()

    def __len__(self):
        return len(self.tokens)

    def __getitem__(self, i):
        return {"tokens": self.tokens[i], "loss_mask": self.masks[i]}


def _loader(dataset, consumed, micro_batch_size, global_batch_size, parallel, num_workers):
    """Megatron's order: micro-batch j of DP rank r holds samples consumed + j·mbs·dp + r·mbs (+ mbs)."""
    def batches():
        start = consumed
        while True:
            first = start + parallel.dp_rank * micro_batch_size
            yield torch.utils.data.default_collate([dataset[first + k] for k in range(micro_batch_size)])
            start += micro_batch_size * parallel.dp_size
    return batches()


def _train(flags, parallel):
    """Three steps, then a validation pass (forward-only schedule); (losses + [validation loss], grad norms,
    the trainer)."""
    config = build_run_config(add_training_args(argparse.ArgumentParser()).parse_args(FLAGS + flags), None)
    torch.manual_seed(config.training.seed)
    trainer = Trainer(config, TrainData(MaskedTokens(), MaskedTokens(seed=1), loader_builder=_loader), parallel)
    it = trainer._loader(trainer.data.train_dataset, 0)
    losses, norms = [], []
    for _ in range(STEPS):
        loss, norm, skipped, *_ = trainer.train_step([trainer._prepare(next(it)) for _ in range(trainer.num_micro_batches)])
        assert not skipped
        losses.append(loss)
        norms.append(norm)
    return losses + [trainer.evaluate()], norms, trainer


def _weights(trainer) -> dict[str, torch.Tensor]:
    """This rank's weights (its TP shard) under the one-process model's names."""
    return {chunk.global_name(n): t.detach().clone() for chunk in model_chunks(trainer.model)
            for n, t in chunk.state_dict().items()}


def _save_rank(rank, world_size, flags, tp, pp, out_dir):
    parallel = initialize_parallel(tp, pp)
    losses, norms, trainer = _train(flags, parallel)
    if parallel.dp_rank == 0:
        torch.save({"losses": losses, "norms": norms, "weights": _weights(trainer)},
                   f"{out_dir}/tp{parallel.tp_rank}_pp{parallel.pp_rank}.pt")


def _run(flags, tp, pp, world, out_dir):
    """Train on ``world`` gloo processes; ``{tp_rank: (losses, norms, weights of every stage)}``."""
    out_dir.mkdir()
    run_distributed(_save_rank, world, flags, tp, pp, str(out_dir))
    runs = {}
    for t in range(tp):
        stages = [torch.load(out_dir / f"tp{t}_pp{p}.pt", weights_only=True) for p in range(pp)]
        weights = {k: v for stage in stages for k, v in stage["weights"].items()}
        runs[t] = stages[0]["losses"], stages[0]["norms"], weights
    return runs


def _one_process(flags):
    torch.set_num_threads(1)
    losses, norms, trainer = _train(flags, ParallelState.single())
    return losses, norms, _weights(trainer)


# name: (flags, TP, PP, world size); DP = world / (TP x PP).
LAYOUTS = {
    "pp2": (["--pipeline-model-parallel-size", "2"], 1, 2, 2),
    "pp4_uneven": (["--pipeline-model-parallel-size", "4", "--decoder-first-pipeline-num-layers", "2"], 1, 4, 4),
    "tp2_pp2_sp": (["--pipeline-model-parallel-size", "2", "--tensor-model-parallel-size", "2",
                    "--sequence-parallel"], 2, 2, 4),
    "pp2_dp2_distopt": (["--pipeline-model-parallel-size", "2", "--use-distributed-optimizer"], 1, 2, 4),
    "pp2_interleaved_v2": (["--pipeline-model-parallel-size", "2", "--num-layers-per-virtual-pipeline-stage", "1"],
                           1, 2, 2),
}
SHAPE = {"pp4_uneven": ["--num-layers", "5"]}  # 2 + 1 + 1 + 1 layers


@pytest.mark.slow
@pytest.mark.distributed
@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_pipelined_training_equals_one_process(layout, tmp_path):
    flags, tp, pp, world = LAYOUTS[layout]
    shape = SHAPE.get(layout, [])
    ref_losses, ref_norms, ref_weights = _one_process(shape)
    assert min(ref_norms) > 0.5  # above --clip-grad: clipping is active
    piped = _run(shape + flags, tp, pp, world, tmp_path / "pp")
    for losses, norms, weights in piped.values():
        assert losses == pytest.approx(ref_losses, rel=REL)
        assert norms == pytest.approx(ref_norms, rel=REL)
    if tp == 1 and pp == world:  # no DP, no TP: the same sums in the same order as one process
        (_, _, weights), = piped.values()
        assert weights.keys() == ref_weights.keys()
        # atol 1e-7 (5e-6 of the init std): the norm is summed per stage, so the clip coefficient differs in
        # its last bits, which Adam's step turns into ~1e-8 moves of elements whose gradient is near eps.
        for name, ref in ref_weights.items():
            torch.testing.assert_close(weights[name], ref, rtol=REL, atol=1e-7, msg=lambda m, n=name: f"{n}: {m}")
        return
    # TP and DP reduce partial sums in another order than one process does: float32 rounding moves the
    # gradients of near-zero elements and Adam's normalised step carries that into the weights (the same
    # happens without pipelining). So: the weights equal those of the same TP x DP layout without
    # pipelining within 1e-6 elementwise, and the one-process weights within 1e-4 of each tensor's norm
    # (measured: up to 5e-6 with DP2, 2e-5 with TP2, the same with and without pipelining).
    at = flags.index("--pipeline-model-parallel-size")
    plain_flags = flags[:at] + flags[at + 2:]
    plain = _run(shape + plain_flags, tp, 1, world // pp, tmp_path / "no_pp")
    for t, (_, _, weights) in piped.items():
        full_ref = _shard_of(ref_weights, weights, t, tp)
        for name, tensor in weights.items():
            torch.testing.assert_close(tensor, plain[t][2][name], rtol=REL, atol=0, msg=lambda m, n=name: f"{n}: {m}")
            rel = ((tensor - full_ref[name]).norm() / full_ref[name].norm()).item()
            assert rel < 1e-4, f"{name}: {rel:.2e} from one process"


def _shard_of(full: dict, local: dict, tp_rank: int, tp: int) -> dict:
    """The one-process weights cut to TP rank ``tp_rank``'s shapes, by the model's own sharding."""
    from megapmc.model.config import LlamaConfig
    from megapmc.model.llama import build_model

    config = build_run_config(add_training_args(argparse.ArgumentParser()).parse_args(FLAGS), None).model
    meta = build_model(config, ParallelState.for_shapes(tp=tp, tp_rank=tp_rank), device="meta")
    return local_slices(meta, {k: full[k] for k in local})


# ---- steps the schedule cannot run as they come: short and odd micro-batches, a partial validation step ----

def _steps_loader(dataset, consumed, micro_batch_size, global_batch_size, parallel, num_workers):
    """Whole steps of 5 samples as instruction tuning's loader gives them (``yields_steps``): micro-batches of
    2, 2 and 1 rows; the validation set's 11 samples end on a step of one micro-batch of one row."""
    def steps():
        for start in range(consumed, len(dataset), 5):
            rows = list(range(start, min(start + 5, len(dataset))))
            yield [torch.utils.data.default_collate([dataset[i] for i in rows[k:k + micro_batch_size]])
                   for k in range(0, len(rows), micro_batch_size)]
    return steps()


def _train_steps(flags, parallel):
    """Two steps of 5 samples, then validation over all 3 of its steps (the last one partial)."""
    args = FLAGS + ["--micro-batch-size", "2", "--eval-iters", "3"] + flags
    config = build_run_config(add_training_args(argparse.ArgumentParser()).parse_args(args), None)
    torch.manual_seed(config.training.seed)
    data = TrainData(MaskedTokens(), MaskedTokens(num_samples=11, seed=1), loader_builder=_steps_loader,
                     yields_steps=True)
    trainer = Trainer(config, data, parallel)
    it = trainer._loader(trainer.data.train_dataset, 0)
    losses = [trainer.train_step(trainer._next_step(it))[0] for _ in range(2)]
    return losses + [trainer.evaluate()]


def _save_steps(rank, world_size, flags, out_dir):
    losses = _train_steps(flags, initialize_parallel(1, world_size))
    torch.save(losses, f"{out_dir}/rank{rank}.pt")


@pytest.mark.slow
@pytest.mark.distributed
@pytest.mark.parametrize("layout", ["pp2", "pp2_interleaved_v2"])
def test_short_and_partial_steps_equal_one_process(layout, tmp_path, capfd):
    """Pipelined, each step is padded with masked rows to full micro-batches (and, interleaved, to a multiple
    of PP micro-batches); without it 1F1B exchanged activations of the wrong shape and the interleaved
    validation raised on its partial last step."""
    torch.set_num_threads(1)
    reference = _train_steps([], ParallelState.single())
    flags = LAYOUTS[layout][0]
    run_distributed(_save_steps, 2, flags, str(tmp_path))
    for rank in range(2):
        assert torch.load(tmp_path / f"rank{rank}.pt", weights_only=True) == pytest.approx(reference, rel=REL)
    notice = "padded the step with masked 1 rows to --micro-batch-size 2"
    if layout == "pp2_interleaved_v2":
        notice += " and 1 micro-batches to a multiple of --pipeline-model-parallel-size 2"
    assert capfd.readouterr().out.count(notice) == 1


# ---- the DP reduction overlapped with the pipeline's backwards ---------------------------------------------

def _save_overlap(rank, world_size, flags, out_dir):
    """Train PP2 x DP2; record, each step, how many buckets had started their DP reduction when the schedule
    returned (from the backward hooks of each chunk's last micro-batch), before ``finish_grad_sync``."""
    parallel = initialize_parallel(1, 2)
    config = build_run_config(add_training_args(argparse.ArgumentParser()).parse_args(FLAGS + flags), None)
    torch.manual_seed(config.training.seed)
    trainer = Trainer(config, TrainData(MaskedTokens(), MaskedTokens(seed=1), loader_builder=_loader), parallel)
    buckets = [b for buffer in trainer.ddp.grad_buffers for b in buffer.buckets]
    started, schedule = [], trainer.forward_backward

    def forward_backward(*args, **kwargs):
        loss_sum = schedule(*args, **kwargs)
        started.append(sum(b.grad_sync_started for b in buckets))
        return loss_sum
    trainer.forward_backward = forward_backward
    it = trainer._loader(trainer.data.train_dataset, 0)
    out = [trainer.train_step([trainer._prepare(next(it)) for _ in range(trainer.num_micro_batches)])[:2]
           for _ in range(STEPS)]
    torch.save({"steps": out, "started": started, "buckets": len(buckets), "weights": _weights(trainer)},
               f"{out_dir}/rank{rank}.pt")


@pytest.mark.slow
@pytest.mark.distributed
@pytest.mark.parametrize("layout", ["pp2_dp2_distopt", "pp2_interleaved_v2"])
def test_overlapped_grad_reduce_equals_reducing_after_the_schedule(layout, tmp_path):
    """--overlap-grad-reduce (the default) starts every bucket's reduction (all-reduce, or the distributed
    optimizer's reduce-scatter) inside the schedule; losses, grad norms and weights are bit-identical to
    --no-overlap-grad-reduce, which reduces everything after it."""
    flags = LAYOUTS[layout][0] + ["--ddp-bucket-size", "5000"]  # several buckets per stage
    runs = {}
    for overlap in ("--overlap-grad-reduce", "--no-overlap-grad-reduce"):
        out = tmp_path / overlap
        out.mkdir()
        run_distributed(_save_overlap, 4, flags + [overlap], str(out))
        runs[overlap] = [torch.load(out / f"rank{r}.pt", weights_only=True) for r in range(4)]
    for on, off in zip(runs["--overlap-grad-reduce"], runs["--no-overlap-grad-reduce"]):
        assert on["buckets"] > 1
        assert on["started"] == [on["buckets"]] * STEPS and off["started"] == [0] * STEPS
        assert on["steps"] == off["steps"]
        for name, tensor in on["weights"].items():
            assert torch.equal(tensor, off["weights"][name]), name
