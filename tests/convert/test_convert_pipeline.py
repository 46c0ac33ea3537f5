"""Conversion at any TP x PP: a pipelined target gets the trainer's per-(TP, PP) files and config, round
trips are bit-identical, and the trainer at TP2 x PP2 starts from a converted checkpoint with the loss of
a one-process run from the same Hugging Face weights."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from convert_fixtures import make_hf_model
from safetensors.torch import load_file

from megapmc.checkpoint import model_io
from megapmc.convert import ConversionError, ConvertConfig, convert
from megapmc.testing.distributed import free_port
from megapmc.training.metrics_file import METRICS_NAME, read_metrics

TOY = Path(__file__).resolve().parents[1] / "training" / "toy_train.py"


def _convert(loader, saver, load_dir, save_dir, **kw):
    return convert(ConvertConfig(loader, saver, load_dir, save_dir, progress=False, **kw))


def _hf_tensors(hf_dir: Path) -> dict[str, torch.Tensor]:
    return {k: v for f in sorted(hf_dir.glob("*.safetensors")) for k, v in load_file(str(f)).items()}


def test_pp2_files_are_the_trainers(hf_gqa, tmp_path):
    _, hf_dir = hf_gqa
    out = _convert("hf", "megapmc", hf_dir, tmp_path / "tp2pp2", target_tensor_parallel_size=2,
                   target_pipeline_parallel_size=2, verify=True)  # --verify reads the stage files back
    ckpt = out / "iter_0000000"
    assert sorted(p.name for p in ckpt.glob("*.safetensors")) == [
        "model_tp00_pp000.safetensors", "model_tp00_pp001.safetensors",
        "model_tp01_pp000.safetensors", "model_tp01_pp001.safetensors"]
    # stage 0: the embedding and layer 0; stage 1: layer 1, the final norm and the output layer
    first, last = (set(load_file(str(ckpt / model_io.model_shard_name(1, p)))) for p in (0, 1))
    assert "embed_tokens.weight" in first and all(n.startswith(("embed_tokens", "layers.0.")) for n in first)
    assert {"norm.weight", "lm_head.weight"} <= last and all(not n.startswith("layers.0.") for n in last)
    parallel = json.loads((ckpt / "config.json").read_text())["parallel"]
    assert parallel == {"tensor_model_parallel_size": 2, "pipeline_model_parallel_size": 2,
                        "num_layers_per_virtual_pipeline_stage": None,
                        "decoder_first_pipeline_num_layers": None, "decoder_last_pipeline_num_layers": None}


def test_hf_to_pp2_to_hf_is_bit_identical(hf_gqa, tmp_path):
    _, hf_dir = hf_gqa
    _convert("hf", "megapmc", hf_dir, tmp_path / "pp2", target_pipeline_parallel_size=2)
    _convert("megapmc", "hf", tmp_path / "pp2", tmp_path / "back", dtype="fp32")
    original, back = _hf_tensors(hf_dir), _hf_tensors(tmp_path / "back")
    assert back.keys() == original.keys() and all(torch.equal(back[n], original[n]) for n in original)


def test_tp2_pp2_to_tp1_pp1_to_hf_equals_the_original(hf_gqa, tmp_path):
    _, hf_dir = hf_gqa
    _convert("hf", "megapmc", hf_dir, tmp_path / "tp2pp2", target_tensor_parallel_size=2,
             target_pipeline_parallel_size=2)
    _convert("megapmc", "megapmc", tmp_path / "tp2pp2", tmp_path / "tp1")
    assert [p.name for p in (tmp_path / "tp1" / "iter_0000000").glob("model_*")] == ["model_tp00.safetensors"]
    _convert("megapmc", "hf", tmp_path / "tp1", tmp_path / "back", dtype="fp32")
    original, back = _hf_tensors(hf_dir), _hf_tensors(tmp_path / "back")
    assert back.keys() == original.keys() and all(torch.equal(back[n], original[n]) for n in original)


def test_reshard_tp2_pp2_to_tp1_pp4_equals_direct_conversion(tmp_path):
    hf_dir = tmp_path / "hf"
    make_hf_model(num_layers=4).save_pretrained(hf_dir)
    _convert("hf", "megapmc", hf_dir, tmp_path / "tp2pp2", target_tensor_parallel_size=2,
             target_pipeline_parallel_size=2)
    _convert("megapmc", "megapmc", tmp_path / "tp2pp2", tmp_path / "via", target_pipeline_parallel_size=4)
    _convert("hf", "megapmc", hf_dir, tmp_path / "direct", target_pipeline_parallel_size=4)
    for pp in range(4):
        name = model_io.model_shard_name(0, pp)
        via, direct = (load_file(str(tmp_path / d / "iter_0000000" / name)) for d in ("via", "direct"))
        assert via.keys() == direct.keys() and all(torch.equal(via[n], direct[n]) for n in direct)


@pytest.mark.parametrize("flags, stages", [
    ({"decoder_first_pipeline_num_layers": 1}, ({0}, {1, 2, 3})),
    ({"num_layers_per_virtual_pipeline_stage": 1}, ({0, 2}, {1, 3})),  # interleaved: chunks of each rank
])
def test_uneven_and_interleaved_splits_put_layers_where_the_trainer_does(flags, stages, tmp_path):
    hf_dir = tmp_path / "hf"
    make_hf_model(num_layers=4).save_pretrained(hf_dir)
    out = _convert("hf", "megapmc", hf_dir, tmp_path / "pp2", target_pipeline_parallel_size=2, **flags)
    ckpt = out / "iter_0000000"
    for pp, layers in enumerate(stages):
        names = load_file(str(ckpt / model_io.model_shard_name(0, pp)))
        assert {int(n.split(".")[1]) for n in names if n.startswith("layers.")} == layers
    parallel = json.loads((ckpt / "config.json").read_text())["parallel"]
    assert all(parallel[k] == v for k, v in flags.items())


def test_pipeline_errors_name_the_flag_and_the_file(hf_gqa, tmp_path):
    _, hf_dir = hf_gqa
    with pytest.raises(ConversionError, match="--target-pipeline-parallel-size 3: a stage would hold no decoder "
                                              "layer|over --target-pipeline-parallel-size 3"):
        _convert("hf", "megapmc", hf_dir, tmp_path / "pp3", target_pipeline_parallel_size=3)
    with pytest.raises(ConversionError, match="apply to --saver megapmc only"):
        _convert("hf", "hf", hf_dir, tmp_path / "hf_pp2", target_pipeline_parallel_size=2)
    with pytest.raises(ConversionError, match="need --target-pipeline-parallel-size > 1"):
        _convert("hf", "megapmc", hf_dir, tmp_path / "first", decoder_first_pipeline_num_layers=1)
    out = _convert("hf", "megapmc", hf_dir, tmp_path / "pp2", target_pipeline_parallel_size=2)
    (out / "iter_0000000" / "model_tp00_pp001.safetensors").unlink()
    with pytest.raises(ConversionError, match="model_tp00_pp001.safetensors: missing; config.json says "
                                              "tensor_model_parallel_size=1 and pipeline_model_parallel_size=2"):
        _convert("megapmc", "hf", out, tmp_path / "back")
    assert not any(p.name.startswith(("pp3", "hf_pp2", "first", "back")) for p in tmp_path.iterdir())


def _first_loss(save: Path, load: Path, tp: int, pp: int) -> float:
    flags = ["--model", "tiny", "--num-layers", "2", "--vocab-size", "128", "--seq-length", "16",
             "--micro-batch-size", "1", "--global-batch-size", "4", "--lr", "3e-3", "--train-iters", "1",
             "--log-interval", "1", "--eval-interval", "0", "--no-progress-bar",
             "--tensor-model-parallel-size", str(tp), "--pipeline-model-parallel-size", str(pp),
             "--save", str(save), "--pretrained-checkpoint", str(load)]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(tp * pp), "--master-port",
           str(free_port()), str(TOY), *flags]
    proc = subprocess.run(cmd, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"{load / 'iter_0000000'} has no manifest.json (a converted checkpoint)" in proc.stdout  # it was loaded
    (first, *_), _ = read_metrics(save / METRICS_NAME)
    assert first["iteration"] == 1
    return first["loss"]


@pytest.mark.slow
@pytest.mark.distributed
def test_trainer_at_tp2_pp2_starts_from_a_converted_checkpoint(tmp_path):
    hf_dir = tmp_path / "hf"
    make_hf_model(vocab_size=128).save_pretrained(hf_dir)
    for name, tp, pp in (("tp1", 1, 1), ("tp2pp2", 2, 2)):  # the tiny preset's vocabulary padding (64)
        _convert("hf", "megapmc", hf_dir, tmp_path / name, target_tensor_parallel_size=tp,
                 target_pipeline_parallel_size=pp, make_vocab_size_divisible_by=64)
    one = _first_loss(tmp_path / "run1", tmp_path / "tp1", 1, 1)
    piped = _first_loss(tmp_path / "run4", tmp_path / "tp2pp2", 2, 2)
    assert piped == pytest.approx(one, rel=1e-6)
