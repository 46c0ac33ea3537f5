"""Logits parity with Hugging Face's LlamaForCausalLM on a tiny random config, weights copied."""
import pytest
import torch

from megapmc.model import LlamaConfig, TransformerOptions, build_model

transformers = pytest.importorskip("transformers")


def _hf_model(config: LlamaConfig):
    hf_config = transformers.LlamaConfig(**{k: v for k, v in config.to_hf().items() if k != "architectures"})
    hf_config._attn_implementation = "eager"
    torch.manual_seed(0)
    return transformers.LlamaForCausalLM(hf_config).eval()


def copy_hf_weights(model, hf) -> None:
    """megapmc (TP = 1) ← HF, through the names in docs/architecture.md."""
    sd = hf.state_dict()
    v = model.config.vocab_size
    with torch.no_grad():
        model.embed_tokens.weight[:v].copy_(sd["model.embed_tokens.weight"])
        model.lm_head.weight[:v].copy_(sd["lm_head.weight"])
        model.norm.weight.copy_(sd["model.norm.weight"])
        for i, layer in enumerate(model.layers):
            p = f"model.layers.{i}."
            layer.input_layernorm.weight.copy_(sd[p + "input_layernorm.weight"])
            layer.post_attention_layernorm.weight.copy_(sd[p + "post_attention_layernorm.weight"])
            layer.self_attn.qkv_proj.weight.copy_(torch.cat(
                [sd[p + f"self_attn.{n}_proj.weight"] for n in "qkv"]))
            layer.self_attn.o_proj.weight.copy_(sd[p + "self_attn.o_proj.weight"])
            layer.mlp.gate_up_proj.weight.copy_(torch.cat(
                [sd[p + "mlp.gate_proj.weight"], sd[p + "mlp.up_proj.weight"]]))
            layer.mlp.down_proj.weight.copy_(sd[p + "mlp.down_proj.weight"])


@pytest.mark.parametrize("attention_backend", ["sdpa", "math"])
def test_logits_match_transformers(attention_backend):
    # vocab 500 is padded to 512: the padded rows must not change anything.
    config = LlamaConfig.from_name("tiny", vocab_size=500)
    hf = _hf_model(config)
    model = build_model(config, options=TransformerOptions(attention_backend=attention_backend))
    copy_hf_weights(model, hf)
    ids = torch.randint(0, config.vocab_size, (2, 24), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ours = model.gather_logits(model(ids))
        theirs = hf(ids).logits
    assert ours.shape == theirs.shape == (2, 24, 500)
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)

    labels = torch.randint(0, config.vocab_size, (2, 24), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        loss = model(ids, labels=labels)
    ref = torch.nn.functional.cross_entropy(theirs.flatten(0, 1), labels.flatten(), reduction="none")
    torch.testing.assert_close(loss, ref.view(2, 24), rtol=1e-5, atol=1e-5)


def test_logits_match_transformers_with_position_ids():
    config = LlamaConfig.from_name("tiny", vocab_size=500)
    hf = _hf_model(config)
    model = build_model(config)
    copy_hf_weights(model, hf)
    ids = torch.randint(0, config.vocab_size, (2, 16), generator=torch.Generator().manual_seed(3))
    position_ids = torch.arange(5, 21).expand(2, 16)
    with torch.no_grad():
        ours = model.gather_logits(model(ids, position_ids=position_ids))
        theirs = hf(ids, position_ids=position_ids).logits
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)
