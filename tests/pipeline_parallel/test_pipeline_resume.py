"""Checkpoints per (TP, PP) rank: a TP2 x PP2 run SIGKILLed mid-run and restarted gives the uninterrupted
run's losses, validation losses and final files bit for bit; a pipelined checkpoint reads at PP = 1
(each stage wrote its part under the one-process names)."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from safetensors.torch import load_file

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "training"))  # toy_train.py, test_resume's helpers

from test_resume import _descendants, _last_iteration  # noqa: E402

from megapmc.checkpoint.checkpointing import read_tracker  # noqa: E402
from megapmc.checkpoint.model_io import load_model_shards  # noqa: E402
from megapmc.testing.distributed import free_port  # noqa: E402
from megapmc.training.logging import METRICS_NAME, read_metrics  # noqa: E402

TOY = Path(__file__).resolve().parents[1] / "training" / "toy_train.py"
TRAIN_ITERS = 8
FLAGS = ["--model", "tiny", "--num-layers", "4", "--vocab-size", "128", "--seq-length", "32",
         "--micro-batch-size", "1", "--global-batch-size", "4", "--lr", "3e-3", "--lr-warmup-iters", "2",
         "--train-iters", str(TRAIN_ITERS), "--tensor-model-parallel-size", "2", "--sequence-parallel",
         "--pipeline-model-parallel-size", "2", "--use-distributed-optimizer", "--log-interval", "4",
         "--eval-interval", "4", "--eval-iters", "1", "--save-interval", "3", "--no-progress-bar", "--toy-masks"]


def _launch(save_dir: Path, nproc: int = 4, flags=FLAGS) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(nproc), "--master-port",
           str(free_port()), str(TOY), *flags, "--save", str(save_dir), "--load", str(save_dir)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)


def _finish(proc: subprocess.Popen) -> str:
    out, _ = proc.communicate(timeout=480)
    assert proc.returncode == 0, out.decode()
    return out.decode()


@pytest.mark.slow
@pytest.mark.distributed
def test_tp2_pp2_sigkill_and_resume_equals_uninterrupted_run(tmp_path):
    reference = tmp_path / "reference"
    _finish(_launch(reference))
    final = reference / f"iter_{TRAIN_ITERS:07d}"
    names = sorted(p.name for p in final.iterdir())
    assert "model_tp01_pp001.safetensors" in names and "optim_tp00_pp001_dp00.safetensors" in names
    assert "state_tp01_pp000_dp00.json" in names and "model_tp00.safetensors" not in names

    killed = tmp_path / "killed"
    proc = _launch(killed)
    deadline = time.time() + 480
    while _last_iteration(killed / METRICS_NAME) < 4 and proc.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    for pid in _descendants(proc.pid):  # the whole job at once, as when a node is lost
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.wait()
    at_kill = _last_iteration(killed / METRICS_NAME)
    assert 4 <= at_kill < TRAIN_ITERS, f"the run was at iteration {at_kill} when killed; the test needs it mid-run"
    resumed_from = read_tracker(killed)
    assert resumed_from is not None and resumed_from < TRAIN_ITERS
    out = _finish(_launch(killed))
    assert f"resumed from {killed / f'iter_{resumed_from:07d}'} at iteration {resumed_from}" in out

    ref_train, ref_valid = read_metrics(reference / METRICS_NAME)
    got_train, got_valid = read_metrics(killed / METRICS_NAME)
    assert [r["iteration"] for r in got_train] == list(range(1, TRAIN_ITERS + 1))
    for ref, got in zip(ref_train, got_train):
        assert (got["loss"], got["lr"], got["grad_norm"]) == (ref["loss"], ref["lr"], ref["grad_norm"]), ref["iteration"]
    assert [r["valid_loss"] for r in got_valid] == [r["valid_loss"] for r in ref_valid]
    for name in names:
        if name.endswith(".safetensors"):
            ref_sd, got_sd = load_file(final / name), load_file(killed / final.name / name)
            assert ref_sd.keys() == got_sd.keys()
            for k in ref_sd:
                assert ref_sd[k].equal(got_sd[k]), f"{name}: {k} differs"

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
