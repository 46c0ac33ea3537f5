"""The launch scripts: syntax, their errors for missing inputs, how they start the trainer, --dry-run."""
import os
import stat
import subprocess
from pathlib import Path

import numpy as np
import pytest

from megapmc.data.indexed_dataset import IndexedDatasetBuilder

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = ["examples/pretrain_pmc_13b.sh", "examples/pretrain_pmc_13b.slurm", "examples/pretrain_tiny_cpu.sh"]
SCRIPT_13B = ROOT / "examples/pretrain_pmc_13b.sh"


@pytest.mark.parametrize("script", SCRIPTS)
def test_bash_syntax(script):
    subprocess.run(["bash", "-n", str(ROOT / script)], check=True)


@pytest.fixture
def env_13b(tmp_path, spm_model):
    """The 13B script's environment over tiny generated shards (their token counts are all a dry run reads)."""
    rng = np.random.default_rng(0)
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "LOCAL_RANK", "WORLD_SIZE")}
    for name, docs in (("books", 40), ("papers", 20), ("general", 10)):
        builder = IndexedDatasetBuilder(str(tmp_path / f"{name}_text_document"), dtype=np.uint16)
        for _ in range(docs):
            builder.add_document(rng.integers(3, 500, size=3000, dtype=np.uint16))
        builder.finalize()
        env[f"{name.upper()}_PREFIX"] = str(tmp_path / f"{name}_text_document")
    env.update(TOKENIZER_MODEL=str(spm_model), CHECKPOINT_DIR=str(tmp_path / "run"),
               LLAMA_CKPT=str(tmp_path / "llama-13b-megapmc"), OMP_NUM_THREADS="1")
    return env


def _run(env, *args):
    return subprocess.run(["bash", str(SCRIPT_13B), *args], env=env, cwd=ROOT, capture_output=True, text=True)


@pytest.mark.parametrize("missing, message", [
    ("BOOKS_PREFIX", "set BOOKS_PREFIX to the prefix of an indexed dataset"),
    ("TOKENIZER_MODEL", "set TOKENIZER_MODEL to LLaMA-13B's tokenizer.model"),
    ("CHECKPOINT_DIR", "set CHECKPOINT_DIR to the run directory"),
    ("LLAMA_CKPT", "set LLAMA_CKPT to LLaMA-13B converted"),
])
def test_missing_environment_is_named(env_13b, missing, message):
    del env_13b[missing]
    proc = _run(env_13b)
    assert proc.returncode == 2 and message in proc.stderr


def test_missing_shard_and_checkpoint_are_named(env_13b, tmp_path):
    proc = _run({**env_13b, "PAPERS_PREFIX": str(tmp_path / "nope")})
    assert proc.returncode == 2 and f"PAPERS_PREFIX={tmp_path / 'nope'}: {tmp_path / 'nope'}.bin/.idx not found" in proc.stderr
    proc = _run(env_13b)  # LLAMA_CKPT does not exist (a dry run does not need it)
    assert proc.returncode == 2 and "LLAMA_CKPT=" in proc.stderr and "no such checkpoint" in proc.stderr


def _fake_launchers(tmp_path) -> str:
    """`python` and `torchrun` stand-ins on PATH that print how they were called."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in ("python", "torchrun"):
        path = bin_dir / name
        path.write_text(f'#!/usr/bin/env bash\necho "{name} $*"\n')
        path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return f"{bin_dir}:{os.environ['PATH']}"


def test_starts_torchrun_itself_or_runs_one_rank_under_torchrun(env_13b, tmp_path):
    env = {**env_13b, "PATH": _fake_launchers(tmp_path), "NNODES": "4", "NODE_RANK": "2", "MASTER_ADDR": "node0"}
    (tmp_path / "llama-13b-megapmc").mkdir()
    plain = _run(env, "--log-interval", "5").stdout.strip()
    assert plain.startswith("torchrun --nproc-per-node 8 --nnodes 4 --node-rank 2 --master-addr node0 "
                            "--master-port 6000 -m megapmc.pretrain --model llama-13b")
    assert "--global-batch-size 3200" in plain and "--lr 2e-5" in plain and plain.endswith("--log-interval 5")
    # `torchrun --no-python ... examples/pretrain_pmc_13b.sh` sets RANK and LOCAL_RANK in each rank.
    ranked = _run({**env, "RANK": "9", "LOCAL_RANK": "1", "WORLD_SIZE": "32"}).stdout.strip()
    assert ranked.startswith("python -m megapmc.pretrain --model llama-13b")
    assert f"--data-path 15 {env['BOOKS_PREFIX']} 4 {env['PAPERS_PREFIX']} 1 {env['GENERAL_PREFIX']}" in ranked


@pytest.mark.slow
def test_dry_run_prints_config_plan_and_memory(env_13b):
    proc = _run({**env_13b, "NNODES": "4"}, "--dry-run")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert '"global_batch_size": 3200' in out and '"seq_length": 2048' in out and '"lr": 2e-05' in out
    assert "32 processes = TP 2 x DP 16; 100 micro-batches of 2 per rank" in out
    assert "epoch = one pass over books (5 epochs)" in out
    assert "TP 2 x DP 16, micro-batch 2, seq 2048, bf16, recompute selective, sequence parallel on" in out
    assert "TP 1 x DP 32:" in out and "(does not fit)" in out


def _env_printing_launchers(tmp_path) -> str:
    """`python` / `torchrun` / `srun` stand-ins that print CUDA_DEVICE_MAX_CONNECTIONS as they see it."""
    bin_dir = tmp_path / "envbin"
    bin_dir.mkdir()
    for name in ("python", "torchrun", "srun", "scontrol"):
        path = bin_dir / name
        path.write_text('#!/usr/bin/env bash\necho "CDMC=${CUDA_DEVICE_MAX_CONNECTIONS:-unset}"\n')
        path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return f"{bin_dir}:{os.environ['PATH']}"


def _finetune_env(env_13b, tmp_path):
    sft = tmp_path / "sft"
    (tmp_path / "sft_sft.json").write_text("{}")
    (tmp_path / "stage1").mkdir()
    return {**env_13b, "SFT_DATA": str(sft), "PRETRAINED_CKPT": str(tmp_path / "stage1")}


@pytest.mark.parametrize("script", ["examples/pretrain_pmc_13b.sh", "examples/finetune_pmc_13b.sh",
                                    "examples/pretrain_pmc_13b.slurm"])
@pytest.mark.parametrize("ranked", [False, True])
def test_cuda_device_max_connections_is_one_unless_set(env_13b, tmp_path, script, ranked):
    env = {**_finetune_env(env_13b, tmp_path), "PATH": _env_printing_launchers(tmp_path),
           "SLURM_JOB_NODELIST": "node0", "SLURM_NTASKS_PER_NODE": "8", "SLURM_NNODES": "1"}
    env.pop("CUDA_DEVICE_MAX_CONNECTIONS", None)
    (tmp_path / "llama-13b-megapmc").mkdir()
    if ranked:
        env.update(RANK="0", LOCAL_RANK="0", WORLD_SIZE="8")

    def run(extra_env):
        proc = subprocess.run(["bash", str(ROOT / script)], env={**env, **extra_env}, cwd=ROOT,
                              capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
        return proc.stdout.strip()

    assert run({}) == "CDMC=1"
    assert run({"CUDA_DEVICE_MAX_CONNECTIONS": "8"}) == "CDMC=8"  # a user's explicit choice stays
