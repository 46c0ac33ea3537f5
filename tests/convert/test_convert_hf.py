"""Hugging Face ⇄ megapmc: logits parity with transformers, bit-identical round trips, tokenizer export."""
import json

import pytest
import torch
from convert_fixtures import logits_of, make_hf_model, random_ids

from megapmc.convert import ConvertConfig, convert, export_to_hf, import_from_hf, load_megapmc
from megapmc.convert.megapmc_format import resolve_checkpoint_dir
from megapmc.model import build_model


def _megapmc_logits(config, state, ids):
    model = build_model(config, seed=None).eval()
    model.load_state_dict(state, strict=True)
    with torch.no_grad():
        return model.gather_logits(model(ids))


@pytest.mark.parametrize("fixture", ["hf_gqa", "hf_mha_bin"])
def test_hf_to_megapmc_tp1_logits_match_transformers(fixture, request, tmp_path):
    hf_model, hf_dir = request.getfixturevalue(fixture)
    out = import_from_hf(hf_dir, tmp_path / "ckpt", tp=1)
    assert (out / "latest_checkpointed_iteration.txt").read_text() == "0"
    config, (state,) = load_megapmc(out)
    assert config.vocab_size == 500 and state["lm_head.weight"].shape[0] == config.padded_vocab_size(1)
    ids = random_ids(500)
    torch.testing.assert_close(_megapmc_logits(config, state, ids), logits_of(hf_model, ids), rtol=0, atol=1e-4)


def test_hf_to_megapmc_to_hf_is_bit_identical(hf_gqa, tmp_path):
    from safetensors.torch import load_file
    from transformers import AutoConfig, AutoModelForCausalLM

    hf_model, hf_dir = hf_gqa
    convert(ConvertConfig("hf", "megapmc", hf_dir, tmp_path / "tp2", target_tensor_parallel_size=2, progress=False))
    convert(ConvertConfig("megapmc", "hf", tmp_path / "tp2", tmp_path / "back", dtype="fp32",
                          max_shard_bytes=60_000, progress=False))
    index = json.loads((tmp_path / "back" / "model.safetensors.index.json").read_text())
    files = sorted(set(index["weight_map"].values()))
    assert len(files) > 1 and files[0] == f"model-00001-of-{len(files):05d}.safetensors"
    exported = {k: v for f in files for k, v in load_file(tmp_path / "back" / f).items()}
    original = hf_model.state_dict()
    assert exported.keys() == original.keys()
    for name, tensor in original.items():
        assert torch.equal(exported[name], tensor), name
    AutoConfig.from_pretrained(tmp_path / "back")  # a config transformers accepts
    reloaded = AutoModelForCausalLM.from_pretrained(tmp_path / "back").eval()
    ids = random_ids(500)
    assert torch.equal(logits_of(reloaded, ids), logits_of(hf_model, ids))
    assert not (tmp_path / "back.tmp").exists()


def test_bf16_export_and_tokenizer_loads_offline(spm_model, tmp_path):
    import sentencepiece as spm
    from transformers import AutoModelForCausalLM, AutoTokenizer

    hf_model = make_hf_model(vocab_size=512, seed=3)
    hf_model.save_pretrained(tmp_path / "src")
    import_from_hf(tmp_path / "src", tmp_path / "ckpt", tp=2)
    export_to_hf(tmp_path / "ckpt", tmp_path / "out", tokenizer_model=spm_model, dtype="bf16")
    for f in ("config.json", "generation_config.json", "tokenizer.model", "tokenizer.json",
              "tokenizer_config.json", "special_tokens_map.json", "model.safetensors.index.json"):
        assert (tmp_path / "out" / f).is_file(), f
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "out")
    assert model.dtype == torch.bfloat16
    assert torch.equal(model.lm_head.weight, hf_model.lm_head.weight.bfloat16())
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "out")
    sp = spm.SentencePieceProcessor(model_file=str(spm_model))
    text = "The patient presents with chest pain and reduced renal function."
    assert tokenizer(text)["input_ids"] == [sp.bos_id(), *sp.encode(text)]
    assert len(tokenizer) == model.config.vocab_size == 512
    assert tokenizer.decode(tokenizer(text)["input_ids"], skip_special_tokens=True) == text

    # a tokenizer.json, or a directory of Hugging Face tokenizer files, exports the same tokenizer
    for i, source in enumerate([tmp_path / "out" / "tokenizer.json", tmp_path / "out"]):
        export_to_hf(tmp_path / "ckpt", tmp_path / f"out{i}", tokenizer_model=source)
        again = AutoTokenizer.from_pretrained(tmp_path / f"out{i}")
        assert again(text)["input_ids"] == tokenizer(text)["input_ids"] and again.eos_token_id == sp.eos_id()

    # importing the export records its tokenizer, and --verify prompts with it
    convert(ConvertConfig("hf", "megapmc", tmp_path / "out", tmp_path / "again", verify=True, progress=False))
    section = json.loads((tmp_path / "again" / "iter_0000000" / "config.json").read_text())["tokenizer"]
    assert section["tokenizer_model"] == str((tmp_path / "out").resolve())


def test_tied_embeddings_and_extra_buffers_are_handled(tmp_path):
    hf_model = make_hf_model(seed=4)
    state = hf_model.state_dict()
    hf_model.config.save_pretrained(tmp_path / "src")
    cfg = json.loads((tmp_path / "src" / "config.json").read_text())
    (tmp_path / "src" / "config.json").write_text(json.dumps({**cfg, "tie_word_embeddings": True}))
    from safetensors.torch import save_file

    tied = {k: v for k, v in state.items() if k != "lm_head.weight"}
    tied["model.layers.0.self_attn.rotary_emb.inv_freq"] = torch.ones(8)  # what old checkpoints carry
    save_file(tied, tmp_path / "src" / "model.safetensors")
    out = import_from_hf(tmp_path / "src", tmp_path / "ckpt")
    _, (megapmc_state,) = load_megapmc(resolve_checkpoint_dir(out))
    assert torch.equal(megapmc_state["lm_head.weight"][:500], state["model.embed_tokens.weight"])


def test_added_tokens_extend_the_exported_vocabulary(spm_model, tmp_path):
    """PMC-LLaMA-style: a pad token appended after the SentencePiece pieces is row 512 of a 513-row model."""
    from transformers import AutoTokenizer

    make_hf_model(vocab_size=513, seed=8).save_pretrained(tmp_path / "src")
    import_from_hf(tmp_path / "src", tmp_path / "ckpt", tp=2)
    convert(ConvertConfig("megapmc", "hf", tmp_path / "ckpt", tmp_path / "out", tokenizer_model=spm_model,
                          added_tokens=["[PAD]"], progress=False))
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "out")
    assert len(tokenizer) == 513 and tokenizer.convert_tokens_to_ids("[PAD]") == 512
    assert json.loads((tmp_path / "out" / "config.json").read_text())["vocab_size"] == 513
