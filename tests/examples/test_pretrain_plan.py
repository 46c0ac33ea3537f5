"""The 13B script's own flags: `tools/data_plan.py` prints the iterations the script trains, and an epoch
is every book token (no documents held out of the books)."""
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from megapmc.data.data_plan import make_plan
from megapmc.data.indexed_dataset import IndexedDatasetBuilder

ROOT = Path(__file__).resolve().parents[2]
DATA_FLAGS = {"--data-path", "--valid-data-path", "--test-data-path", "--split", "--seq-length",
              "--global-batch-size", "--micro-batch-size", "--train-epochs", "--train-iters", "--epoch-source",
              "--seed"}


def _shard(prefix, docs, doc_tokens):
    builder = IndexedDatasetBuilder(str(prefix), dtype=np.uint16)
    doc = np.full(doc_tokens, 7, dtype=np.uint16)
    for _ in range(docs):
        builder.add_document(doc)
    builder.finalize()
    return str(prefix)


@pytest.fixture(params=[True, False], ids=["with-VALID_PREFIX", "without"])
def script_args(request, tmp_path, spm_model):
    """The arguments examples/pretrain_pmc_13b.sh hands to `python -m megapmc.pretrain`, one per item.

    The books hold 6.5 global batches' worth of samples (2400 book samples of 2049 tokens per batch), so
    holding 3.1% of them out would cost iterations; papers and general repeat, which the plan allows.
    """
    sizes = {"books": (160, 200_000), "papers": (20, 50_000), "general": (10, 50_000), "valid": (5, 20_000)}
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "LOCAL_RANK", "WORLD_SIZE")}
    for name, (docs, tokens) in sizes.items():
        env[f"{name.upper()}_PREFIX"] = _shard(tmp_path / f"{name}_text_document", docs, tokens)
    if not request.param:
        del env["VALID_PREFIX"]
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "python"
    fake.write_text('#!/usr/bin/env bash\nprintf "%s\\n" "$@"\n')
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    (tmp_path / "llama").mkdir()
    env.update(TOKENIZER_MODEL=str(spm_model), CHECKPOINT_DIR=str(tmp_path / "run"), LLAMA_CKPT=str(tmp_path / "llama"),
               PATH=f"{bin_dir}:{env['PATH']}", RANK="0", LOCAL_RANK="0", WORLD_SIZE="32")
    return _script_argv("examples/pretrain_pmc_13b.sh", env), env


def _script_argv(script: str, env: dict) -> list[str]:
    """What ``script`` hands to `python -m megapmc.pretrain` (``python`` on PATH prints its arguments)."""
    proc = subprocess.run(["bash", str(ROOT / script)], env=env, cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[:2] == ["-m", "megapmc.pretrain"]
    return lines[2:]


def _flag_values(args: list[str]) -> dict[str, tuple[str, ...]]:
    out, flag = {}, None
    for a in args:
        if a.startswith("--"):
            flag = a
            out[flag] = ()
        else:
            out[flag] += (a,)
    return out


def _data_flags(args):
    """The flags of ``args`` that tools/data_plan.py also takes, with their values."""
    out, keep = [], False
    for a in args:
        if a.startswith("--"):
            keep = a in DATA_FLAGS
        if keep:
            out.append(a)
    return out


def test_data_plan_tool_prints_the_iterations_the_script_trains(script_args, capsys, monkeypatch):
    args, env = script_args
    assert args[args.index("--split") + 1] == "1", "no documents are held out of the epoch's sources"
    if "VALID_PREFIX" in env:
        assert args[args.index("--valid-data-path") + 1] == env["VALID_PREFIX"]
    else:
        assert "--valid-data-path" not in args
    from megapmc import pretrain
    from megapmc.training.arguments import build_run_config, parse_args

    monkeypatch.setenv("WORLD_SIZE", "32")
    parsed = parse_args(pretrain.build_parser(), args)
    trained = pretrain.data_plan(build_run_config(parsed, pretrain.data_config(parsed)))

    sys.path.insert(0, str(ROOT / "tools"))
    try:
        import data_plan as tool
    finally:
        sys.path.pop(0)
    tool.main(_data_flags(args) + ["--json"])
    printed = json.loads(capsys.readouterr().out)
    assert printed["train_iters"] == trained.train_iters

    # Every book token is in the epoch: the same as planning from the shards' whole token counts.
    whole = make_plan(["books", "papers", "general"], [15, 4, 1], [160 * 200_000, 20 * 50_000, 10 * 50_000],
                      2048, 3200, train_epochs=5)
    assert trained.train_iters == whole.train_iters == 32
    assert trained.sources[0].samples_per_epoch == (160 * 200_000 - 1) // 2048
    # What the old --split 969,30,1 trained: 3.1% fewer book documents, fewer iterations.
    held_out = parse_args(pretrain.build_parser(), args + ["--split", "969,30,1"])
    held_out.valid_data_path = None
    assert pretrain.data_config(held_out).split_fractions[0] == pytest.approx(0.969)
    assert pretrain.data_plan(build_run_config(held_out, pretrain.data_config(held_out))).train_iters == 31


def test_optimizer_and_precision_are_the_papers_and_the_released_scripts(script_args, monkeypatch):
    args, _ = script_args
    from megapmc import pretrain
    from megapmc.training.arguments import build_run_config, parse_args

    monkeypatch.setenv("WORLD_SIZE", "32")
    parsed = parse_args(pretrain.build_parser(), args)
    config = build_run_config(parsed, pretrain.data_config(parsed))
    opt, schedule, training = config.optimizer, config.lr_schedule, config.training
    # Paper: seq 2048, batch 3200, lr 2e-5, bf16, 5 epochs. Release (Pretrain/training.sh on HF Trainer):
    # weight decay 0, AdamW (0.9, 0.999, 1e-8), warmup ratio 0.03, cosine to 0, max_grad_norm 1.0.
    assert (training.seq_length, training.global_batch_size, training.train_epochs, training.bf16) == (2048, 3200, 5, True)
    assert (opt.lr, opt.weight_decay, opt.adam_beta1, opt.adam_beta2, opt.adam_eps, opt.clip_grad) == (
        2e-5, 0.0, 0.9, 0.999, 1e-8, 1.0)
    assert (schedule.lr_decay_style, schedule.lr_warmup_fraction, schedule.min_lr) == ("cosine", 0.03, 0.0)
    assert config.model_options.recompute_granularity == "selective"


def test_the_70b_script_runs_the_same_recipe(script_args):
    """Both stage-1 scripts take data, schedule and optimizer from examples/stage1_recipe.sh; only the
    model and its parallel layout differ."""
    args_13b, env = script_args
    flags_13b, flags_70b = _flag_values(args_13b), _flag_values(_script_argv("examples/pretrain_pmc_70b.sh", env))
    layout = {"--model", "--tensor-model-parallel-size", "--pipeline-model-parallel-size", "--micro-batch-size"}
    assert {f: v for f, v in flags_13b.items() if f not in layout} == {
        f: v for f, v in flags_70b.items() if f not in layout}
    assert flags_70b["--model"] == ("llama2-70b",) and flags_70b["--pipeline-model-parallel-size"] == ("2",)
