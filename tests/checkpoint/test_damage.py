"""Every kind of checkpoint damage is a one-line error naming the file and what to do (issue 14).

A run directory with two checkpoints (iterations 2 and 4) is saved, then iteration 4 is damaged one way
per case and resumed as the trainer does (``resolve_checkpoint_dir`` + ``load_for_resume``). The damage is
done with plain byte edits guided by the formats' documentation (safetensors: an 8-byte little-endian
header length, the JSON header, the tensor bytes — https://github.com/huggingface/safetensors#format).
"""
import json
import re
import shutil
import struct

import pytest
import torch

from megapmc.checkpoint.checkpointing import (
    TRACKER_NAME,
    CheckpointError,
    resolve_checkpoint_dir,
    save_checkpoint,
)
from megapmc.checkpoint.resume import load_for_resume
from megapmc.model.config import LlamaConfig
from megapmc.parallel.state import ParallelState

MODEL = LlamaConfig.from_name("tiny")
SINGLE = ParallelState.single()


def _model_state(seed):
    g = torch.Generator().manual_seed(seed)
    return {"embed_tokens.weight": torch.randn(8, 4, generator=g), "norm.weight": torch.randn(4, generator=g)}


def _save(run, iteration, run_id="run-a"):
    config = {"model": MODEL.to_dict(), "parallel": {"tensor_model_parallel_size": 1}, "training": {}}
    save_checkpoint(run, iteration, SINGLE, config, _model_state(iteration),
                    {"exp_avg": torch.full((64,), float(iteration))}, optimizer_is_sharded=False,
                    run_state={"iteration": iteration, "consumed_samples": 1000 + 8 * iteration}, run_id=run_id)


@pytest.fixture
def run(tmp_path):
    _save(tmp_path, 2)
    _save(tmp_path, 4)
    return tmp_path


def _resume(run, verify="full", fallback=False, ckpt_step=None, model=MODEL, parallel=SINGLE, expected=None):
    ckpt = resolve_checkpoint_dir(run, ckpt_step=ckpt_step, fallback=fallback)
    return load_for_resume(ckpt, parallel, model.to_dict(), expected or _model_state(0), load_run_state=True,
                           load_optimizer_later=True, verify=verify, fallback=fallback, notify=lambda m: None)


# ------------------------------------------------------------------------------------------ damage


def _truncate(path, keep=0.5):
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def _flip(path, offset):
    data = bytearray(path.read_bytes())
    data[offset if offset >= 0 else len(data) + offset] ^= 0x40
    path.write_bytes(bytes(data))


def _header_len(path):
    return struct.unpack("<Q", path.read_bytes()[:8])[0]


def _edit_json(path, fn):
    obj = json.loads(path.read_text())
    fn(obj)
    path.write_text(json.dumps(obj))


def _replace_text(path, old, new):
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))


def _other_run_shard(run):
    other = run / "other"
    _save(other, 4, run_id="run-b")
    shutil.copy(other / "iter_0000004" / "model_tp00.safetensors", run / "iter_0000004" / "model_tp00.safetensors")


def _rename_to_6(run):
    (run / "iter_0000004").rename(run / "iter_0000006")
    (run / TRACKER_NAME).write_text("6")


I4 = "iter_0000004"
M, O, S, C, F = (f"{I4}/model_tp00.safetensors", f"{I4}/optim_tp00_dp00.safetensors", f"{I4}/state_tp00_dp00.json",
                 f"{I4}/config.json", f"{I4}/manifest.json")
INTACT = r"the newest intact checkpoint is iter_0000002: resume it with --ckpt-step 2"

# (id, damage(run), verify mode, file the message names, regex of the rest)
CASES = [
    ("safetensors-truncated", lambda r: _truncate(r / M), "full", M,
     r"size mismatch: expected \d+ bytes, found \d+.*" + INTACT),
    ("safetensors-truncated-unverified", lambda r: _truncate(r / M), "off", M, r"damaged safetensors file"),
    ("safetensors-header-length-flipped", lambda r: _flip(r / M, 5), "full", M,
     r"garbled or truncated safetensors header"),
    ("safetensors-header-json-garbled", lambda r: _flip(r / M, 9), "full", M, r"garbled safetensors header.*" + INTACT),
    ("safetensors-header-garbled-unverified", lambda r: _flip(r / M, 9), "off", M, r"damaged safetensors file"),
    ("safetensors-tensor-bit-flip", lambda r: _flip(r / M, -3), "full", M,
     r"checksum mismatch: expected xxh3_64 [0-9a-f]{16}, found [0-9a-f]{16}.*" + INTACT),
    ("optimizer-bit-flip", lambda r: _flip(r / O, -1), "full", O, r"checksum mismatch"),
    ("optimizer-truncated", lambda r: _truncate(r / O, 0.9), "metadata", O, r"size mismatch"),
    ("optimizer-deleted", lambda r: (r / O).unlink(), "full", O, r"missing \(listed in manifest.json\)"),
    ("state-truncated", lambda r: _truncate(r / S), "full", S, r"size mismatch"),
    ("state-truncated-unverified", lambda r: _truncate(r / S), "off", S, r"truncated JSON \(training state\)"),
    ("state-garbled-unverified", lambda r: _replace_text(r / S, '"consumed_samples"', '"consumed_samples\x00'),
     "off", S, r"garbled JSON"),
    ("state-consumed-samples-edited",
     lambda r: _replace_text(r / S, '"consumed_samples": 1032', '"consumed_samples": 1033'), "full", S,
     r"checksum mismatch.*" + INTACT),
    ("state-key-removed-unverified", lambda r: _edit_json(r / S, lambda o: o.pop("consumed_samples")), "off", S,
     r"missing consumed_samples"),
    ("config-truncated", lambda r: _truncate(r / C), "full", C, r"truncated JSON \(the run configuration\)"),
    ("config-garbled", lambda r: _replace_text(r / C, '"model"', '"model'), "full", C, r"garbled JSON"),
    ("config-deleted", lambda r: (r / C).unlink(), "full", C, r"missing; .* not a megapmc checkpoint directory"),
    ("manifest-deleted", lambda r: (r / F).unlink(), "full", F,
     r"missing, so the checkpoint's files cannot be verified"),
    ("manifest-garbled", lambda r: _replace_text(r / F, '"files"', '"files'), "full", F, r"garbled JSON"),
    ("manifest-truncated", lambda r: _truncate(r / F), "metadata", F, r"truncated JSON"),
    ("shard-from-another-iteration", lambda r: shutil.copy(r / "iter_0000002/model_tp00.safetensors", r / M),
     "metadata", M, r"from another iteration: its iteration is 2, the checkpoint's is 4"),
    ("state-from-another-iteration", lambda r: shutil.copy(r / "iter_0000002/state_tp00_dp00.json", r / S), "off", S,
     r"records iteration 2, the directory is named for 4"),
    ("shard-from-another-run", _other_run_shard, "metadata", M, r"from another run: its run_id is 'run-b'"),
    ("directory-renamed", _rename_to_6, "full", "iter_0000006/manifest.json",
     r"records iteration 4, the directory is named for 6.*" + INTACT),
    ("tracker-deleted", lambda r: (r / TRACKER_NAME).unlink(), "full", TRACKER_NAME,
     r"is missing but .* holds checkpoints; checkpoints present: iter_0000004, iter_0000002; .*--ckpt-step N"),
    ("tracker-garbled", lambda r: (r / TRACKER_NAME).write_bytes(b"\xff\x00"), "full", TRACKER_NAME,
     r"(unreadable|expected an iteration number).*checkpoints present: iter_0000004, iter_0000002"),
    ("tracker-names-missing-dir", lambda r: (r / TRACKER_NAME).write_text("9\n"), "full", TRACKER_NAME,
     r"names iteration 9 but .*iter_0000009 does not exist; checkpoints present"),
]


@pytest.mark.parametrize("damage,verify,name,pattern", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_damage_is_one_line_naming_the_file(run, damage, verify, name, pattern):
    damage(run)
    with pytest.raises(CheckpointError) as info:
        _resume(run, verify=verify)
    message = str(info.value)
    assert "\n" not in message, message
    assert str(run / name) in message, message
    assert re.search(pattern, message), message


# ----------------------------------------------------------------------------- the run, not the files

MISFITS = [
    ("wrong-shape", dict(model=MODEL.replace(hidden_size=128)),
     r"holds a model of another shape.*hidden_size: checkpoint 64, this run 128"),
    ("wrong-vocab", dict(model=MODEL.replace(vocab_size=MODEL.vocab_size + 1000)),
     r"vocab_size: checkpoint \d+, this run \d+"),
    ("wrong-tp-size", dict(parallel=ParallelState.for_shapes(tp=2)),
     r"saved with --tensor-model-parallel-size 1, this run uses 2.*convert_checkpoint"),
    ("missing-keys", dict(expected={**_model_state(0), "lm_head.weight": torch.zeros(8, 4)}),
     r"tensors do not fit the model: missing \['lm_head.weight'\]"),
    ("wrong-tensor-shape", dict(expected={"embed_tokens.weight": torch.zeros(8, 5), "norm.weight": torch.zeros(4)}),
     r"shape mismatch embed_tokens.weight: checkpoint \(8, 4\), model \(8, 5\)"),
    ("ckpt-step-missing", dict(ckpt_step=3), r"--ckpt-step 3: .*iter_0000003 does not exist; checkpoints present"),
]


@pytest.mark.parametrize("kwargs,pattern", [m[1:] for m in MISFITS], ids=[m[0] for m in MISFITS])
def test_a_checkpoint_that_does_not_fit_the_run_is_one_line(run, kwargs, pattern):
    with pytest.raises(CheckpointError, match=pattern) as info:
        _resume(run, **kwargs)
    assert "\n" not in str(info.value)


def test_intact_checkpoint_resumes_and_reports_its_verification(run):
    loaded = _resume(run)
    assert loaded.path.name == I4 and loaded.run_state["consumed_samples"] == 1032
    assert loaded.verified.files == 4 and loaded.verified.bytes > 0  # config, model, state, optimizer


def test_fallback_and_ckpt_step_resume_the_older_checkpoint(run):
    _flip(run / M, -3)
    notes = []
    ckpt = resolve_checkpoint_dir(run, fallback=True)
    loaded = load_for_resume(ckpt, SINGLE, MODEL.to_dict(), _model_state(0), True, True, fallback=True,
                             notify=notes.append)
    assert loaded.path.name == "iter_0000002" and loaded.run_state["iteration"] == 2
    assert len(notes) == 1 and "checksum mismatch" in notes[0] and "falling back to" in notes[0]
    assert _resume(run, ckpt_step=2).run_state["iteration"] == 2
    (run / TRACKER_NAME).unlink()  # a lost tracker with the fallback: the newest intact one, nothing deleted
    assert _resume(run, fallback=True).path.name == "iter_0000002"
    assert (run / I4).is_dir()


def test_metadata_mode_skips_only_the_checksums(run):
    _flip(run / M, -3)  # tensor bytes: only a checksum sees this
    assert _resume(run, verify="metadata").path.name == I4
