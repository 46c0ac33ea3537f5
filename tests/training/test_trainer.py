"""The loop: token-weighted loss over micro-batches and DP ranks, NaN/Inf skipping, SIGTERM, learning."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from megapmc.checkpoint.checkpointing import CheckpointError, read_tracker
from megapmc.testing.distributed import run_distributed
from megapmc.training.metrics_file import METRICS_NAME, read_metrics
from megapmc.training.trainer import TrainingError
from toy_train import main as toy_main

TOY = Path(__file__).with_name("toy_train.py")
COMMON = ["--model", "tiny", "--vocab-size", "128", "--seq-length", "16", "--lr", "3e-3",
          "--eval-interval", "0", "--no-progress-bar", "--log-interval", "1"]


def _toy_rank(rank, world_size, argv):
    toy_main(argv)


@pytest.mark.slow
@pytest.mark.distributed
def test_dp2_with_loss_masks_and_a_restart_equals_one_process(tmp_path):
    """Masks keep different token counts per sample: the loss must be the token mean over the whole global
    batch, whichever rank and micro-batch holds a sample (DP=2 × 2 micro-batches vs 1 rank × 4). The DP=2
    run stops after iteration 2 and resumes, so its distributed-optimizer shards go through a checkpoint."""
    flags = COMMON + ["--micro-batch-size", "1", "--global-batch-size", "4", "--train-iters", "3", "--toy-masks",
                      "--use-distributed-optimizer"]
    dp2 = ["--save", str(tmp_path / "dp2"), "--load", str(tmp_path / "dp2")]
    run_distributed(_toy_rank, 2, flags + dp2 + ["--exit-interval", "2"])
    assert {p.name for p in (tmp_path / "dp2" / "iter_0000002").glob("optim_*")} == {
        "optim_tp00_dp00.safetensors", "optim_tp00_dp01.safetensors"}
    run_distributed(_toy_rank, 2, flags + dp2)
    torch.set_num_threads(1)
    toy_main(flags + ["--save", str(tmp_path / "dp1")])
    dp2, _ = read_metrics(tmp_path / "dp2" / METRICS_NAME)
    dp1, _ = read_metrics(tmp_path / "dp1" / METRICS_NAME)
    assert len(dp1) == len(dp2) == 3
    for a, b in zip(dp1, dp2):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-6)
        assert a["grad_norm"] == pytest.approx(b["grad_norm"], rel=1e-5)
    w1 = load_file(tmp_path / "dp1" / "iter_0000003" / "model_tp00.safetensors")
    w2 = load_file(tmp_path / "dp2" / "iter_0000003" / "model_tp00.safetensors")
    for k in w1:
        torch.testing.assert_close(w1[k], w2[k], rtol=1e-5, atol=1e-6)


def test_nan_steps_are_skipped_counted_then_stop(tmp_path, capsys):
    # Global batches of 2 samples: iteration 2 (samples 2, 3) and iterations 4.. (samples 6..) get NaN.
    flags = COMMON + ["--micro-batch-size", "1", "--global-batch-size", "2", "--train-iters", "20",
                      "--lr-warmup-iters", "4", "--max-consecutive-skipped-iters", "3",
                      "--toy-nan-samples", "3", *map(str, range(6, 40)), "--save", str(tmp_path)]
    torch.set_num_threads(1)
    with pytest.raises(TrainingError, match="3 iterations in a row .* had NaN/Inf gradients"):
        toy_main(flags)
    records, _ = read_metrics(tmp_path / METRICS_NAME)
    assert [r["skipped"] for r in records] == [False, True, False, True, True, True]
    # A skipped step does not advance the schedule: iteration 3 gets the warmup's second rate.
    assert [r["lr"] for r in records[:3]] == pytest.approx([0.75e-3, 1.5e-3, 1.5e-3])
    assert "NaN/Inf in the gradients, step skipped (1 in a row, 1 in total)" in capsys.readouterr().out


@pytest.mark.slow
def test_sigterm_saves_and_exits_zero(tmp_path):
    save = tmp_path / "run"
    flags = COMMON + ["--micro-batch-size", "2", "--global-batch-size", "4", "--train-iters", "100000",
                      "--save", str(save), "--load", str(save)]
    proc = subprocess.Popen([sys.executable, str(TOY), *flags], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    deadline = time.time() + 120
    while not (save / METRICS_NAME).is_file() or not read_metrics(save / METRICS_NAME)[0]:
        assert proc.poll() is None and time.time() < deadline, proc.stdout.read().decode()
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, out.decode()
    saved = read_tracker(save)
    assert saved is not None and f"RESULT {saved} signal" in out.decode()
    state = json.loads((save / f"iter_{saved:07d}" / "state_tp00_dp00.json").read_text())
    assert state["iteration"] == saved and state["consumed_samples"] == 4 * saved
    assert read_metrics(save / METRICS_NAME)[0][-1]["iteration"] == saved


def test_finetune_and_pretrained_checkpoint_load_weights_only(tmp_path):
    torch.set_num_threads(1)
    flags = COMMON + ["--micro-batch-size", "2", "--global-batch-size", "4"]
    base = tmp_path / "base"
    toy_main(flags + ["--train-iters", "6", "--save", str(base)])
    fresh = tmp_path / "fresh"
    toy_main(flags + ["--train-iters", "2", "--save", str(fresh)])
    for name, load_flags in (("finetune", ["--load", str(base), "--finetune"]),
                             ("pretrained", ["--pretrained-checkpoint", str(base)])):
        run = tmp_path / name
        toy_main(flags + ["--train-iters", "2", "--save", str(run), "--load", str(run), *load_flags])
        records, _ = read_metrics(run / METRICS_NAME)
        # A new run (iteration 1, sample 0 again) that starts from the trained weights.
        assert [(r["iteration"], r["consumed_samples"]) for r in records] == [(1, 4), (2, 8)]
        assert records[0]["loss"] < read_metrics(fresh / METRICS_NAME)[0][0]["loss"] - 0.5
        state = json.loads((run / "iter_0000002" / "state_tp00_dp00.json").read_text())
        assert state["lr_scheduler"]["num_steps"] == 2
    # A restart of the "pretrained" run resumes it (its own checkpoint wins over --pretrained-checkpoint).
    run = tmp_path / "pretrained"
    toy_main(flags + ["--train-iters", "3", "--save", str(run), "--load", str(run),
                      "--pretrained-checkpoint", str(base)])
    lines = [json.loads(line) for line in (run / METRICS_NAME).read_text().splitlines()]
    assert [r["iteration"] for r in lines if r.get("event") == "resume"] == [2]
    assert [r["iteration"] for r in lines if "loss" in r] == [1, 2, 3]


def test_checkpoint_of_another_shape_is_refused(tmp_path):
    torch.set_num_threads(1)
    flags = COMMON + ["--micro-batch-size", "2", "--global-batch-size", "4", "--train-iters", "1"]
    toy_main(flags + ["--save", str(tmp_path)])
    with pytest.raises(CheckpointError, match="num_layers: checkpoint 2, this run 3"):
        toy_main(flags + ["--load", str(tmp_path), "--num-layers", "3"])


def test_exit_duration_saves_and_stops(tmp_path, capsys):
    torch.set_num_threads(1)
    toy_main(COMMON + ["--micro-batch-size", "2", "--global-batch-size", "4", "--train-iters", "50",
                       "--exit-duration-in-mins", "1e-6", "--save", str(tmp_path)])
    assert "RESULT 1 exit_duration" in capsys.readouterr().out
    assert read_tracker(tmp_path) == 1


def test_cuda_device_max_connections_notice_only_for_tp_on_cuda():
    from megapmc.training.trainer import cuda_connections_notice

    cuda, cpu = torch.device("cuda", 0), torch.device("cpu")
    assert "CUDA_DEVICE_MAX_CONNECTIONS is unset" in cuda_connections_notice(2, cuda, {})
    assert "is '8'" in cuda_connections_notice(8, cuda, {"CUDA_DEVICE_MAX_CONNECTIONS": "8"})
    assert "\n" not in cuda_connections_notice(2, cuda, {})  # one line
    assert cuda_connections_notice(2, cuda, {"CUDA_DEVICE_MAX_CONNECTIONS": "1"}) is None
    assert cuda_connections_notice(1, cuda, {}) is None  # no TP communication to overlap
    assert cuda_connections_notice(2, cpu, {}) is None
