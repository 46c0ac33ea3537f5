"""A checkpoint read at another pipeline layout: a PP=2 run resumed at PP=1 and a PP=1 run resumed at PP=2
continue as the run would have (within fp32 rounding: the gradient norm is summed in another order), the
optimizer states merged from the other split; the evaluation's loader reads a PP=2 checkpoint whole."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

from megapmc.model.llama import build_model
from megapmc.convert.megapmc_format import load_megapmc
from megapmc.testing.distributed import free_port
from megapmc.training.metrics_file import METRICS_NAME, read_metrics

TOY = Path(__file__).resolve().parents[1] / "training" / "toy_train.py"
FLAGS = ["--model", "tiny", "--num-layers", "4", "--vocab-size", "128", "--seq-length", "16", "--micro-batch-size",
         "1", "--global-batch-size", "4", "--lr", "3e-3", "--log-interval", "1", "--eval-interval", "0",
         "--save-interval", "2", "--no-progress-bar", "--toy-masks", "--use-distributed-optimizer"]


def _run(pp: int, iters: int, save: Path, load: Path | None = None) -> None:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(pp), "--master-port",
           str(free_port()), str(TOY), *FLAGS, "--pipeline-model-parallel-size", str(pp), "--train-iters", str(iters),
           "--save", str(save)] + ([] if load is None else ["--load", str(load)])
    proc = subprocess.run(cmd, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    if load is not None:
        assert f"resumed from {load}" in proc.stdout


def _losses(run: Path) -> dict[int, tuple[float, float]]:
    return {r["iteration"]: (r["loss"], r["grad_norm"]) for r in read_metrics(run / METRICS_NAME)[0]}


@pytest.mark.slow
@pytest.mark.distributed
def test_resume_across_pipeline_sizes(tmp_path):
    piped, flat = tmp_path / "pp2", tmp_path / "pp1"
    _run(2, 4, piped)
    _run(1, 4, flat, load=piped / "iter_0000002")  # PP 2 -> 1
    back, ahead = tmp_path / "pp1_to_pp2", tmp_path / "pp1_on"
    _run(2, 6, back, load=flat / "iter_0000004")  # PP 1 -> 2
    _run(1, 6, ahead, load=flat / "iter_0000004")
    for (a, b), steps in (((piped, flat), (3, 4)), ((back, ahead), (5, 6))):
        got, want = _losses(a), _losses(b)
        for i in steps:
            assert got[i] == pytest.approx(want[i], rel=1e-5), f"iteration {i}"

    # What evaluation and conversion load: the whole model of each TP rank from the stages' files.
    config, shards = load_megapmc(piped / "iter_0000004", 1)
    build_model(config, seed=None).load_state_dict(shards[0], strict=True)
