"""The launch scripts: syntax, the paper's stage-2 settings through --dry-run, missing-environment errors."""
import json
import os
import subprocess
from pathlib import Path

import pytest

from megapmc.sft.preprocess import PreprocessConfig, preprocess_sft

REPO = Path(__file__).resolve().parents[2]
SCRIPTS = ["examples/finetune_pmc_13b.sh", "examples/finetune_tiny_cpu.sh", "examples/finetune_task_specific.sh"]


@pytest.mark.parametrize("script", SCRIPTS)
def test_bash_syntax(script):
    subprocess.run(["bash", "-n", str(REPO / script)], check=True)


@pytest.mark.slow
def test_stage2_dry_run_has_the_papers_settings(tmp_path, spm_model):
    from megapmc.data.tokenizer import build_tokenizer

    records = [{"instruction": "Answer.", "input": f"q{i}", "output": f"a{i} b c"} for i in range(50)]
    (tmp_path / "d.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    preprocess_sft(PreprocessConfig(str(tmp_path / "d.jsonl"), str(tmp_path / "medc_i")), build_tokenizer(spm_model),
                   progress=False)
    env = {**os.environ, "SFT_DATA": str(tmp_path / "medc_i"), "TOKENIZER_MODEL": str(spm_model),
           "PRETRAINED_CKPT": str(tmp_path / "stage1"), "CHECKPOINT_DIR": str(tmp_path / "stage2"), "DRY_RUN": "1"}
    out = subprocess.run(["bash", str(REPO / "examples/finetune_pmc_13b.sh")], env=env, capture_output=True,
                         text=True, cwd=REPO)
    assert out.returncode == 0, out.stderr
    config = json.loads(out.stdout[:out.stdout.rindex("}") + 1])
    assert config["model"]["num_layers"] == 40 and config["model"]["hidden_size"] == 5120  # LLaMA-13B
    assert config["training"]["global_batch_size"] == 256 and config["training"]["train_epochs"] == 3
    assert config["training"]["seq_length"] == 2048 and config["training"]["bf16"] is True
    assert config["data"]["packing"] is True
    # SFT/train.py: HF Trainer's adamw_torch defaults (betas 0.9/0.999, eps 1e-8), weight decay 0.
    opt = config["optimizer"]
    assert (opt["lr"], opt["weight_decay"], opt["adam_beta1"], opt["adam_beta2"], opt["adam_eps"]) == (
        2e-5, 0.0, 0.9, 0.999, 1e-8)
    # A step is 256 samples: the 49 training samples here fill the one step of the run 5.22 times over.
    assert "instruction data" in out.stdout and "iterations of 256 samples" in out.stdout


def test_missing_environment_is_named(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("SFT_DATA", "TOKENIZER_MODEL")}
    out = subprocess.run(["bash", str(REPO / "examples/finetune_pmc_13b.sh")], env=env, capture_output=True,
                         text=True, cwd=REPO)
    assert out.returncode == 2 and "set SFT_DATA" in out.stderr
