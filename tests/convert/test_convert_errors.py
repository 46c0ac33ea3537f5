"""Each bad input stops the conversion with a message naming the file or flag and what to do."""
import json
import shutil

import pytest
from convert_fixtures import make_hf_model, save_meta_checkpoint

from megapmc.convert import ConversionError, ConvertConfig, convert, import_from_hf


def _convert(loader, load_dir, save_dir, saver="megapmc", **kw):
    return convert(ConvertConfig(loader, saver, load_dir, save_dir, progress=False, **kw))


def test_directory_that_is_not_a_llama_checkpoint(tmp_path, hf_gqa):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConversionError, match="no config.json, so this is not a Hugging Face LLaMA"):
        _convert("hf", tmp_path / "empty", tmp_path / "o1")
    (tmp_path / "gpt2").mkdir()
    (tmp_path / "gpt2" / "config.json").write_text(json.dumps({"model_type": "gpt2", "architectures": ["GPT2LMHeadModel"]}))
    with pytest.raises(ConversionError, match="'gpt2'.*is not a LLaMA model"):
        _convert("hf", tmp_path / "gpt2", tmp_path / "o2")
    _, hf_dir = hf_gqa
    with pytest.raises(ConversionError, match="no params.json, so this is not a Meta LLaMA checkpoint"):
        _convert("meta", hf_dir, tmp_path / "o3")
    with pytest.raises(ConversionError, match="not a megapmc checkpoint"):
        _convert("megapmc", hf_dir, tmp_path / "o4")
    assert not any(p.name.startswith("o") for p in tmp_path.iterdir())


def test_shapes_not_matching_the_preset_or_the_config(tmp_path, hf_gqa):
    _, hf_dir = hf_gqa
    with pytest.raises(ConversionError, match=r"do not match --model-preset llama-13b: num_layers=2 \(preset: 40\)"):
        _convert("hf", hf_dir, tmp_path / "o1", model_preset="llama-13b")
    wrong = tmp_path / "wrong"
    shutil.copytree(hf_dir, wrong)
    cfg = json.loads((wrong / "config.json").read_text())
    (wrong / "config.json").write_text(json.dumps({**cfg, "intermediate_size": 192}))
    with pytest.raises(ConversionError, match=r"gate_proj.weight has shape \(176, 64\) but .* implies \(192, 64\)"):
        _convert("hf", wrong, tmp_path / "o2")
    assert not (tmp_path / "o2").exists()


def test_tensor_parallel_size_that_does_not_divide_the_heads(tmp_path, hf_gqa):
    _, hf_dir = hf_gqa
    with pytest.raises(ConversionError, match="--target-tensor-parallel-size 4 does not divide num_key_value_heads=2"):
        _convert("hf", hf_dir, tmp_path / "o", target_tensor_parallel_size=4)


def test_missing_shards(tmp_path, hf_gqa):
    _, hf_dir = hf_gqa
    broken = tmp_path / "hf"
    shutil.copytree(hf_dir, broken)
    shards = sorted(broken.glob("model-*.safetensors"))
    assert len(shards) > 1
    shards[1].unlink()
    with pytest.raises(ConversionError, match=f"lists shard\\(s\\) {shards[1].name} that are missing"):
        _convert("hf", broken, tmp_path / "o1")

    save_meta_checkpoint(make_hf_model(seed=2), tmp_path / "meta", model_parallel=4)
    (tmp_path / "meta" / "consolidated.03.pth").unlink()
    with pytest.raises(ConversionError, match="holds 1/4 of wq but 3 shard"):
        _convert("meta", tmp_path / "meta", tmp_path / "o2")
    (tmp_path / "meta" / "consolidated.01.pth").unlink()
    with pytest.raises(ConversionError, match="shard\\(s\\) consolidated.01.pth missing"):
        _convert("meta", tmp_path / "meta", tmp_path / "o3")

    out = import_from_hf(hf_dir, tmp_path / "tp2", tp=2)
    (out / "iter_0000000" / "model_tp01.safetensors").unlink()
    with pytest.raises(ConversionError, match="model_tp01.safetensors: missing; config.json says tensor_model_parallel_size=2"):
        _convert("megapmc", out, tmp_path / "o4", saver="hf")


def test_existing_output_and_tokenizer_mismatch(tmp_path, hf_gqa, spm_model):
    _, hf_dir = hf_gqa
    (tmp_path / "exists").mkdir()
    with pytest.raises(ConversionError, match="exists; choose a new directory"):
        _convert("hf", hf_dir, tmp_path / "exists")
    out = import_from_hf(hf_dir, tmp_path / "ckpt")
    with pytest.raises(ConversionError, match="has 512 tokens, but the model's vocab_size is 500"):
        _convert("megapmc", out, tmp_path / "hf", saver="hf", tokenizer_model=spm_model)
    assert not (tmp_path / "hf").exists()


def test_run_directory_without_a_usable_tracker_lists_its_checkpoints(hf_gqa, tmp_path):
    _, hf_dir = hf_gqa
    run = import_from_hf(hf_dir, tmp_path / "run")
    (run / "latest_checkpointed_iteration.txt").write_text("7")
    with pytest.raises(ConversionError, match=r"names iteration 7 but .* does not exist; checkpoints present: "
                                              r"iter_0000000; give one of them \(its iter_XXXXXXX directory\)"):
        _convert("megapmc", run, tmp_path / "out", saver="hf")
    (run / "latest_checkpointed_iteration.txt").unlink()
    with pytest.raises(ConversionError, match="is missing but .* holds checkpoints"):
        _convert("megapmc", run, tmp_path / "out", saver="hf")
    _convert("megapmc", run / "iter_0000000", tmp_path / "out", saver="hf")  # the advice works
