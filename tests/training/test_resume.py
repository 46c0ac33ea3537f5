"""Fault tolerance of whole runs: SIGKILL at an arbitrary moment and restart gives the uninterrupted run's
losses and weights bit for bit (fp32, CPU, TP=2 under torchrun)."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from toy_runs import TOY, assert_same_files, assert_same_training, finish, kill_job_at, launch

from megapmc.checkpoint.checkpointing import read_tracker
from megapmc.testing.distributed import free_port
from megapmc.training.metrics_file import METRICS_NAME, read_metrics
TRAIN_ITERS = 12
FLAGS = ["--model", "tiny", "--vocab-size", "128", "--seq-length", "32", "--micro-batch-size", "2",
         "--global-batch-size", "8", "--lr", "3e-3", "--lr-warmup-iters", "2", "--train-iters", str(TRAIN_ITERS),
         "--tensor-model-parallel-size", "2", "--log-interval", "4", "--eval-interval", "5", "--eval-iters", "1",
         "--save-interval", "3", "--no-progress-bar", "--toy-masks"]


@pytest.mark.slow
@pytest.mark.distributed
def test_sigkill_and_resume_equals_uninterrupted_run(tmp_path):
    reference, killed = tmp_path / "reference", tmp_path / "killed"
    finish(launch(reference, FLAGS))
    at_kill = kill_job_at(launch(killed, FLAGS), killed, 5)
    assert 5 <= at_kill < TRAIN_ITERS, f"the run was at iteration {at_kill} when killed; the test needs it mid-run"
    resumed_from = read_tracker(killed)
    assert resumed_from is not None and resumed_from < TRAIN_ITERS
    out = finish(launch(killed, FLAGS))
    assert f"resumed from {killed / f'iter_{resumed_from:07d}'} at iteration {resumed_from}" in out

    assert_same_training(reference, killed, TRAIN_ITERS)
    final = f"iter_{TRAIN_ITERS:07d}"
    assert_same_files(reference / final, killed / final, ["model_tp00.safetensors", "model_tp01.safetensors",
                                                          "optim_tp00_dp00.safetensors", "optim_tp01_dp00.safetensors"])


DP_FLAGS = ["--model", "tiny", "--vocab-size", "128", "--seq-length", "32", "--micro-batch-size", "2",
            "--global-batch-size", "8", "--lr", "3e-3", "--lr-warmup-iters", "2", "--train-iters", "6",
            "--log-interval", "1", "--eval-interval", "0", "--save-interval", "2", "--no-progress-bar",
            "--toy-masks", "--use-distributed-optimizer", "--ddp-bucket-size", "5000"]


def _run_dp(nproc: int, save: Path, load: Path | None = None) -> str:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(nproc), "--master-port",
           str(free_port()), str(TOY), *DP_FLAGS, "--save", str(save)]
    if load is not None:
        cmd += ["--load", str(load)]
    proc = subprocess.run(cmd, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True,
                          timeout=240)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def _close(a: float, b: float) -> bool:
    return abs(a - b) <= 1e-5 * max(abs(a), abs(b), 1.0)


@pytest.mark.slow
@pytest.mark.distributed
def test_resume_at_another_data_parallel_size_continues_the_run(tmp_path):
    """ZeRO-1 at DP 2 → resumed at DP 1 → resumed at DP 2 again: every step after a resume matches the
    uninterrupted DP 2 run (to fp32 rounding: the reduction order differs), and the final optimizer states
    equal the uninterrupted run's shards merged."""
    from megapmc.optim import merge_sharded_state_dicts

    reference, shrunk, grown = tmp_path / "dp2", tmp_path / "dp1", tmp_path / "dp2_again"
    _run_dp(2, reference)
    out = _run_dp(1, shrunk, load=reference / "iter_0000002")
    assert "optimizer states merged from 2 data-parallel shards (this run has 1)" in out
    out = _run_dp(2, grown, load=shrunk / "iter_0000004")
    assert "resumed from" in out and "merged" not in out  # a DP-1 shard holds every element already

    ref_train, _ = read_metrics(reference / METRICS_NAME)
    ref = {r["iteration"]: r for r in ref_train}
    for run, first in ((shrunk, 3), (grown, 5)):
        got_train, _ = read_metrics(run / METRICS_NAME)
        assert [r["iteration"] for r in got_train] == list(range(first, 7))
        for got in got_train:
            want = ref[got["iteration"]]
            assert got["lr"] == want["lr"]
            assert _close(got["loss"], want["loss"]) and _close(got["grad_norm"], want["grad_norm"]), (got, want)

    final = "iter_0000006"
    ref_model, got_model = load_file(reference / final / "model_tp00.safetensors"), \
        load_file(grown / final / "model_tp00.safetensors")
    for k in ref_model:
        assert torch.allclose(got_model[k], ref_model[k], rtol=1e-4, atol=1e-6), k
    ref_optim = merge_sharded_state_dicts([load_file(reference / final / f"optim_tp00_dp{r:02d}.safetensors")
                                           for r in range(2)])
    got_optim = merge_sharded_state_dicts([load_file(grown / final / f"optim_tp00_dp{r:02d}.safetensors")
                                           for r in range(2)])
    assert ref_optim.keys() == got_optim.keys()
    for k in ref_optim:
        assert torch.allclose(got_optim[k], ref_optim[k], rtol=1e-3, atol=1e-9), k


@pytest.mark.slow
@pytest.mark.distributed
def test_overlap_param_gather_flag_trains_the_same_run(tmp_path):
    """--overlap-param-gather reaches the optimizer through the trainer (forward, validation and saving wait
    for the gathered buckets) and changes only when the all-gather is waited for: the same losses and weights."""
    runs = {}
    for name, extra in (("plain", []), ("overlap", ["--overlap-param-gather"])):
        save = tmp_path / name
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port",
               str(free_port()), str(TOY), *DP_FLAGS, "--train-iters", "4", "--save-interval", "4",
               "--eval-interval", "2", "--eval-iters", "1", "--save", str(save), *extra]
        proc = subprocess.run(cmd, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True,
                              timeout=240)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        runs[name] = save
    config = json.loads((runs["overlap"] / "iter_0000004" / "config.json").read_text())
    assert config["optimizer"]["overlap_param_gather"] is True
    plain_train, plain_valid = read_metrics(runs["plain"] / METRICS_NAME)
    got_train, got_valid = read_metrics(runs["overlap"] / METRICS_NAME)
    assert [(r["loss"], r["grad_norm"]) for r in got_train] == [(r["loss"], r["grad_norm"]) for r in plain_train]
    assert [r["valid_loss"] for r in got_valid] == [r["valid_loss"] for r in plain_valid]
    plain_model = load_file(runs["plain"] / "iter_0000004" / "model_tp00.safetensors")
    got_model = load_file(runs["overlap"] / "iter_0000004" / "model_tp00.safetensors")
    assert all(torch.equal(got_model[k], plain_model[k]) for k in plain_model)


TORTURE_ITERS = 8
TORTURE_FLAGS = ["--model", "tiny", "--vocab-size", "128", "--seq-length", "16", "--micro-batch-size", "1",
                 "--global-batch-size", "8", "--lr", "3e-3", "--lr-warmup-iters", "2", "--train-iters",
                 str(TORTURE_ITERS), "--tensor-model-parallel-size", "2", "--use-distributed-optimizer",
                 "--ddp-bucket-size", "5000", "--log-interval", "1", "--eval-interval", "0", "--save-interval", "2",
                 "--no-progress-bar", "--toy-masks"]


@pytest.mark.slow
@pytest.mark.distributed
def test_torture_sigkill_at_random_moments_tp2_dp2_distributed_optimizer(tmp_path):
    """TP=2 x DP=2 with ZeRO-1, killed with SIGKILL three times (twice at a random moment, once inside a
    save at a random point: after a model shard, before the manifest, before the tracker) and resumed each
    time: the losses and the final weights and optimizer shards equal the uninterrupted run's bit for bit."""
    import random as _random

    rng = _random.Random(14)
    reference, run = tmp_path / "reference", tmp_path / "killed"
    finish(launch(reference, TORTURE_FLAGS, 4))

    def kill_at(iteration: int) -> None:
        at_kill = kill_job_at(launch(run, TORTURE_FLAGS, 4), run, iteration, rng.uniform(0.0, 0.3))
        assert at_kill < TORTURE_ITERS, "the run finished before the kill"

    kill_at(rng.randint(1, 3))
    save_point = rng.choice(["model_shard", "manifest", "tracker"])
    proc = launch(run, TORTURE_FLAGS, 4, "--toy-die-in-save", "6", save_point)
    proc.communicate(timeout=240)
    assert proc.returncode != 0 and read_tracker(run) == 4, f"the kill inside the save of 6 ({save_point}) missed"
    kill_at(5)
    assert "resumed from" in finish(launch(run, TORTURE_FLAGS, 4))

    assert_same_training(reference, run, TORTURE_ITERS, validation=False)
    final = f"iter_{TORTURE_ITERS:07d}"
    assert_same_files(reference / final, run / final, [f"model_tp{t:02d}.safetensors" for t in range(2)] + [
        f"optim_tp{t:02d}_dp{d:02d}.safetensors" for t in range(2) for d in range(2)])
