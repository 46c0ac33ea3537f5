"""Checkpoint directories: round trip, tracker, pruning, crash safety while writing, config checks."""
import json
import random
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from megapmc.checkpoint.checkpointing import (
    TRACKER_NAME,
    CheckpointError,
    get_rng_state,
    load_checkpoint,
    read_optimizer_state,
    read_tracker,
    resolve_checkpoint_dir,
    save_checkpoint,
    set_rng_state,
)
from megapmc.model.config import LlamaConfig
from megapmc.parallel.state import ParallelState

MODEL = LlamaConfig.from_name("tiny")


def _config(model=MODEL, tp=1):
    return {"model": model.to_dict(), "parallel": {"tensor_model_parallel_size": tp}, "training": {}}


def _model_state(seed):
    g = torch.Generator().manual_seed(seed)
    return {"embed_tokens.weight": torch.randn(8, 4, generator=g), "norm.weight": torch.randn(4, generator=g)}


def _save(save_dir, iteration, keep_last=None):
    return save_checkpoint(
        save_dir, iteration, ParallelState.single(), _config(), _model_state(iteration),
        {"exp_avg": torch.full((3,), float(iteration))}, optimizer_is_sharded=False,
        run_state={"iteration": iteration, "consumed_samples": 4 * iteration}, keep_last=keep_last,
    )


def test_round_trip_and_tracker(tmp_path):
    path = _save(tmp_path, 5)
    assert path.name == "iter_0000005" and read_tracker(tmp_path) == 5
    assert sorted(p.name for p in path.iterdir()) == [
        "config.json", "manifest.json", "model_tp00.safetensors", "optim_tp00_dp00.safetensors",
        "state_tp00_dp00.json"]
    loaded = load_checkpoint(resolve_checkpoint_dir(tmp_path), ParallelState.single(), MODEL.to_dict(),
                             _model_state(0))
    for k, v in _model_state(5).items():
        assert torch.equal(loaded.model_state[k], v)
    assert torch.equal(loaded.optimizer_state["exp_avg"], torch.full((3,), 5.0))
    assert loaded.run_state["consumed_samples"] == 20
    assert loaded.config["parallel"] == {"tensor_model_parallel_size": 1, "data_parallel_size": 1,
                                      "optimizer_is_sharded": False}
    # A checkpoint directory itself is accepted too.
    assert resolve_checkpoint_dir(path) == path


def test_keep_last_prunes_oldest(tmp_path):
    for it in (1, 2, 3, 4):
        _save(tmp_path, it, keep_last=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["iter_0000003", "iter_0000004", TRACKER_NAME]


def test_resolve_empty_and_broken_run_dirs(tmp_path):
    assert resolve_checkpoint_dir(tmp_path) is None
    (tmp_path / TRACKER_NAME).write_text("7\n")
    with pytest.raises(CheckpointError, match="iteration 7 but .*iter_0000007 does not exist"):
        resolve_checkpoint_dir(tmp_path)
    (tmp_path / TRACKER_NAME).write_text("release")
    with pytest.raises(CheckpointError, match="expected an iteration number"):
        resolve_checkpoint_dir(tmp_path)
    with pytest.raises(CheckpointError, match="no such directory"):
        resolve_checkpoint_dir(tmp_path / "nope")


def test_other_tp_size_or_shape_is_explained(tmp_path):
    _save(tmp_path, 1)
    ckpt = resolve_checkpoint_dir(tmp_path)
    two = ParallelState.for_shapes(tp=2)
    with pytest.raises(CheckpointError, match=r"--tensor-model-parallel-size 1, this run uses 2.*convert_checkpoint.*"
                                              r"--pretrained-checkpoint \(the conversion carries the model weights only"):
        load_checkpoint(ckpt, two, MODEL.to_dict(), _model_state(0))
    bigger = MODEL.replace(num_layers=3, hidden_size=128)
    with pytest.raises(CheckpointError, match=r"num_layers: checkpoint 2, this run 3; hidden_size: checkpoint 64"):
        load_checkpoint(ckpt, ParallelState.single(), bigger.to_dict(), _model_state(0))
    wrong = {"embed_tokens.weight": torch.zeros(8, 5), "norm.weight": torch.zeros(4)}
    with pytest.raises(CheckpointError, match=r"embed_tokens.weight: checkpoint \(8, 4\), model \(8, 5\)"):
        load_checkpoint(ckpt, ParallelState.single(), MODEL.to_dict(), wrong)


def test_rng_state_round_trip():
    set_rng_state(get_rng_state())  # JSON-ready lists survive a round trip through json
    state = json.loads(json.dumps(get_rng_state()))
    expected = (random.random(), np.random.rand(), torch.rand(3))
    set_rng_state(state)
    got = (random.random(), np.random.rand(), torch.rand(3))
    assert expected[:2] == got[:2] and torch.equal(expected[2], got[2])


# The child saves iteration 1, then dies by SIGKILL at one point inside the save of iteration 2.
_KILL_SCRIPT = textwrap.dedent("""
    import os, signal, sys, torch
    import megapmc.checkpoint.checkpointing as ck
    from megapmc.parallel.state import ParallelState
    save_dir, where = sys.argv[1], sys.argv[2]
    def save(it):
        ck.save_checkpoint(save_dir, it, ParallelState.single(), {"model": {}, "parallel": {}},
                           {"w": torch.full((4,), float(it))}, {"m": torch.zeros(2)}, False,
                           {"iteration": it, "consumed_samples": it})
    save(1)
    def die(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGKILL)
    if where == "after_model_shard":
        original = ck.save_model_shard
        ck.save_model_shard = lambda *a, **k: (original(*a, **k), die())
    else:
        setattr(ck, where, die)
    save(2)
""")


@pytest.mark.slow
@pytest.mark.parametrize("where", ["after_model_shard", "save_file", "save_config", "write_manifest",
                                   "write_text_atomic"])
def test_kill_while_writing_keeps_previous_checkpoint(tmp_path, where):
    script = tmp_path / "kill.py"
    script.write_text(_KILL_SCRIPT)
    proc = subprocess.run([sys.executable, str(script), str(tmp_path / "run"), where], capture_output=True)
    assert proc.returncode == -9, proc.stderr.decode()
    run = tmp_path / "run"
    assert read_tracker(run) == 1
    ckpt = resolve_checkpoint_dir(run)
    assert ckpt.name == "iter_0000001"
    loaded = load_checkpoint(ckpt, ParallelState.single(), {}, {"w": torch.zeros(4)})
    assert torch.equal(loaded.model_state["w"], torch.full((4,), 1.0))
    assert loaded.run_state["iteration"] == 1
    # The next save cleans up what the killed one left behind.
    save_checkpoint(run, 2, ParallelState.single(), {"model": {}, "parallel": {}}, {"w": torch.ones(4)},
                    {"m": torch.zeros(2)}, False, {"iteration": 2, "consumed_samples": 2})
    assert read_tracker(run) == 2 and not list(run.glob("*.tmp"))


def _optim_shard(name_ranges: dict, step: float = 3.0) -> dict:
    """A ``sharded_state_dict``-shaped optimizer shard whose values are the element indices."""
    sd = {}
    for name, (start, end, numel) in name_ranges.items():
        sd[f"{name}.range"] = torch.tensor([start, end, numel])
        sd[f"{name}.exp_avg"] = torch.arange(start, end, dtype=torch.float32)
        sd[f"{name}.exp_avg_sq"] = torch.arange(start, end, dtype=torch.float32) * 2
        sd[f"{name}.step"] = torch.tensor([step])
    return sd


def _save_two_dp_shards(tmp_path):
    """A ZeRO-1 checkpoint of DP 2: ``a`` (6 elements) straddles the shard boundary, ``b`` is on DP rank 1."""
    two_dp = ParallelState(dp_size=2, world_size=2)  # DP rank 0's view; rank 1's shard is written below
    ckpt = save_checkpoint(tmp_path, 3, two_dp, _config(), _model_state(3), _optim_shard({"a": (0, 4, 6)}),
                           optimizer_is_sharded=True, run_state={"iteration": 3, "consumed_samples": 12})
    save_file(_optim_shard({"a": (4, 6, 6), "b": (0, 3, 3)}), str(ckpt / "optim_tp00_dp01.safetensors"))
    return ckpt


def test_distributed_optimizer_shards_are_merged_at_another_dp_size(tmp_path):
    ckpt = _save_two_dp_shards(tmp_path)
    # The test writes DP rank 1's shard behind the manifest's back: read without verification.
    loaded = load_checkpoint(ckpt, ParallelState.single(), MODEL.to_dict(), _model_state(0), verify="off")
    merged = loaded.optimizer_state
    assert merged["a.range"].tolist() == [0, 6, 6] and merged["b.range"].tolist() == [0, 3, 3]
    assert torch.equal(merged["a.exp_avg"], torch.arange(6.0)) and torch.equal(merged["b.exp_avg_sq"], torch.arange(3.0) * 2)
    # With this rank's layout only the parameters it updates are read (ZeRO-1 at DP 4 owning part of a).
    part = read_optimizer_state(ckpt, ParallelState(dp_size=4, world_size=4), loaded.config, {"a": (3, 5, 6)})
    assert sorted(part) == ["a.exp_avg", "a.exp_avg_sq", "a.range", "a.step"]
    # Same DP size and layout: this rank's own file, as saved.
    own = read_optimizer_state(ckpt, ParallelState(dp_rank=1, dp_size=2, rank=1, world_size=2), loaded.config,
                               {"a": (4, 6, 6), "b": (0, 3, 3)})
    assert own["a.range"].tolist() == [4, 6, 6]
    weights_only = load_checkpoint(ckpt, ParallelState.single(), MODEL.to_dict(), _model_state(0),
                                   load_optimizer=False, verify="off")
    assert weights_only.optimizer_state is None and weights_only.run_state["iteration"] == 3


def test_missing_or_inconsistent_dp_shards_are_named(tmp_path):
    ckpt = _save_two_dp_shards(tmp_path)
    save_file(_optim_shard({"a": (4, 6, 6), "b": (0, 3, 3)}, step=4.0), str(ckpt / "optim_tp00_dp01.safetensors"))
    with pytest.raises(CheckpointError, match=r"cannot merge the optimizer shards of its 2 data-parallel ranks.*"
                                              r"different steps.*--no-load-optim"):
        load_checkpoint(ckpt, ParallelState.single(), MODEL.to_dict(), _model_state(0), verify="off")
    (ckpt / "optim_tp00_dp01.safetensors").unlink()
    with pytest.raises(CheckpointError, match=r"optim_tp00_dp01.safetensors is missing.*--no-load-optim"):
        load_checkpoint(ckpt, ParallelState.single(), MODEL.to_dict(), _model_state(0), verify="off")
