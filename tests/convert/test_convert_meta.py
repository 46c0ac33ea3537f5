"""Meta's consolidated.NN.pth format: model-parallel shards merged, rotary rows permuted, checked
against transformers and against the independent Meta-convention reference forward."""
import pytest
import torch
from convert_fixtures import logits_of, make_hf_model, random_ids, save_meta_checkpoint

from megapmc.convert import ConvertConfig, convert, load_megapmc
from megapmc.convert.meta import MetaLoader, meta_ffn_hidden_size
from megapmc.convert.verify import hf_logits, meta_reference_logits, verification_prompts
from megapmc.model import build_model


@pytest.fixture(scope="module")
def meta_gqa(tmp_path_factory):
    model = make_hf_model(seed=6)
    path = tmp_path_factory.mktemp("meta") / "llama"
    save_meta_checkpoint(model, path, model_parallel=2)
    return model, path


def test_ffn_size_from_params():
    assert meta_ffn_hidden_size(4096, 256) == 11008  # LLaMA-7B
    assert meta_ffn_hidden_size(5120, 256) == 13824  # LLaMA-13B
    assert meta_ffn_hidden_size(8192, 4096, 1.3) == 28672  # LLaMA-2-70B


def test_loader_reads_params_and_merges_shards(meta_gqa):
    model, path = meta_gqa
    loader = MetaLoader(path)
    c = loader.config
    assert (c.num_layers, c.hidden_size, c.num_key_value_heads, c.ffn_hidden_size, c.vocab_size) == (2, 64, 2, 176, 500)
    unit = loader.read_unit(0)
    for name, tensor in unit.items():
        assert torch.equal(tensor, model.state_dict()[name]), name


def test_meta_reference_forward_matches_transformers(meta_gqa, tmp_path):
    """The reference used by --verify is itself right: Meta weights + interleaved rotary == transformers."""
    model, path = meta_gqa
    model.save_pretrained(tmp_path / "hf")
    prompts = verification_prompts(500)
    for ref, hf in zip(meta_reference_logits(path, prompts, torch.float32),
                       hf_logits(tmp_path / "hf", prompts, torch.float32)):
        torch.testing.assert_close(ref, hf, rtol=0, atol=1e-4)


@pytest.mark.slow
def test_meta_to_megapmc_tp2_logits_match_transformers_and_verify_passes(meta_gqa, tmp_path):
    model, path = meta_gqa
    convert(ConvertConfig("meta", "megapmc", path, tmp_path / "ckpt", target_tensor_parallel_size=2,
                          verify=True, progress=False))
    config, (state,) = load_megapmc(tmp_path / "ckpt", tensor_model_parallel_size=1)
    megapmc_model = build_model(config, seed=None).eval()
    megapmc_model.load_state_dict(state)
    ids = random_ids(500)
    with torch.no_grad():
        ours = megapmc_model.gather_logits(megapmc_model(ids))
    torch.testing.assert_close(ours, logits_of(model, ids), rtol=0, atol=1e-4)


def test_meta_to_hf_equals_original_weights(meta_gqa, tmp_path):
    from safetensors.torch import load_file

    model, path = meta_gqa
    convert(ConvertConfig("meta", "hf", path, tmp_path / "hf", dtype="fp32", progress=False))
    exported = load_file(tmp_path / "hf" / "model-00001-of-00001.safetensors")
    assert all(torch.equal(exported[n], t) for n, t in model.state_dict().items())


def test_verify_catches_a_wrong_rotary_layout(meta_gqa, tmp_path, monkeypatch):
    """Skipping the permutation gives a plausible model; only --verify's logits comparison notices, and
    the output is then never renamed into place."""
    from megapmc.convert import VerificationError, meta as meta_module

    _, path = meta_gqa
    monkeypatch.setattr(meta_module, "meta_to_hf_rows", lambda weight, num_heads: weight)
    with pytest.raises(VerificationError, match="largest logits difference"):
        convert(ConvertConfig("meta", "megapmc", path, tmp_path / "ckpt", verify=True, progress=False))
    assert not (tmp_path / "ckpt").exists()
