"""Checkpoints per (TP, PP) rank: a TP2 x PP2 run SIGKILLed mid-run and restarted gives the uninterrupted
run's losses, validation losses and final files bit for bit; a pipelined checkpoint reads at PP = 1
(each stage wrote its part under the one-process names)."""
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "training"))  # toy_train.py and its run helpers

from toy_runs import assert_same_files, assert_same_training, finish, kill_job_at, launch  # noqa: E402

from megapmc.checkpoint.checkpointing import read_tracker  # noqa: E402
from megapmc.checkpoint.model_io import load_model_shards  # noqa: E402

TRAIN_ITERS = 8
FLAGS = ["--model", "tiny", "--num-layers", "4", "--vocab-size", "128", "--seq-length", "32",
         "--micro-batch-size", "1", "--global-batch-size", "4", "--lr", "3e-3", "--lr-warmup-iters", "2",
         "--train-iters", str(TRAIN_ITERS), "--tensor-model-parallel-size", "2", "--sequence-parallel",
         "--pipeline-model-parallel-size", "2", "--use-distributed-optimizer", "--log-interval", "4",
         "--eval-interval", "4", "--eval-iters", "1", "--save-interval", "3", "--no-progress-bar", "--toy-masks"]


@pytest.mark.slow
@pytest.mark.distributed
def test_tp2_pp2_sigkill_and_resume_equals_uninterrupted_run(tmp_path):
    reference, killed = tmp_path / "reference", tmp_path / "killed"
    finish(launch(reference, FLAGS, 4))
    final = reference / f"iter_{TRAIN_ITERS:07d}"
    names = sorted(p.name for p in final.iterdir())
    assert "model_tp01_pp001.safetensors" in names and "optim_tp00_pp001_dp00.safetensors" in names
    assert "state_tp01_pp000_dp00.json" in names and "model_tp00.safetensors" not in names

    at_kill = kill_job_at(launch(killed, FLAGS, 4), killed, 4)
    assert 4 <= at_kill < TRAIN_ITERS, f"the run was at iteration {at_kill} when killed; the test needs it mid-run"
    resumed_from = read_tracker(killed)
    assert resumed_from is not None and resumed_from < TRAIN_ITERS
    out = finish(launch(killed, FLAGS, 4))
    assert f"resumed from {killed / f'iter_{resumed_from:07d}'} at iteration {resumed_from}" in out

    assert_same_training(reference, killed, TRAIN_ITERS)
    assert_same_files(final, killed / final.name, [n for n in names if n.endswith(".safetensors")])

    # The stages' files of a TP rank merge into that rank's whole model (what conversion and evaluation read).
    shards, config = load_model_shards(final)
    assert len(shards) == 2 and {"embed_tokens.weight", "layers.3.mlp.down_proj.weight", "lm_head.weight"} <= set(shards[0])
    assert config["parallel"]["pipeline_model_parallel_size"] == 2

    # Conversion round trip at PP = 2: megapmc (TP2 x PP2) -> Hugging Face -> megapmc (TP2) is bit-identical.
    from megapmc.convert.converter import ConvertConfig, convert

    convert(ConvertConfig("megapmc", "hf", final, tmp_path / "hf", dtype="fp32", progress=False))
    convert(ConvertConfig("hf", "megapmc", tmp_path / "hf", tmp_path / "back", target_tensor_parallel_size=2,
                          dtype="fp32", progress=False, make_vocab_size_divisible_by=64))  # the tiny preset's
    back, _ = load_model_shards(tmp_path / "back" / "iter_0000000")
    for rank in range(2):
        assert back[rank].keys() == shards[rank].keys()
        for k in shards[rank]:
            assert back[rank][k].equal(shards[rank][k]), f"TP rank {rank}: {k} differs after the round trip"
