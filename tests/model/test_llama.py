"""Single-process model tests: parameter counts on the meta device, the checkpoint-name contract,
padded vocabulary, packed samples equal to samples run alone, recompute plans, bf16."""
import pytest
import torch

from megapmc.model import LlamaConfig, TransformerOptions, build_model, num_parameters
from megapmc.model.recompute import RecomputeConfig, layer_chunks
from megapmc.parallel import ParallelState


def test_13b_parameter_count_on_meta():
    model = build_model(LlamaConfig.from_name("llama-13b"), device="meta")
    assert all(p.is_meta for p in model.parameters())
    # Hugging Face's LlamaForCausalLM with LLaMA-13B's config has exactly this many parameters.
    assert num_parameters(model) == 13_015_864_320


def test_13b_per_rank_count_at_tp8():
    config = LlamaConfig.from_name("llama-13b")
    h, f, layers = 5120, 13824, 40
    vocab = config.padded_vocab_size(8)
    assert vocab == 32768  # 32000 padded to a multiple of 128 × 8
    expected = 2 * (vocab // 8) * h + h + layers * ((4 * h * h + 3 * h * f) // 8 + 2 * h)
    for rank in (0, 7):
        model = build_model(config, ParallelState.for_shapes(tp=8, tp_rank=rank), device="meta")
        assert num_parameters(model) == expected == 1_628_328_960


def test_presets_build_with_their_shapes():
    model = build_model(LlamaConfig.from_name("llama2-70b"), device="meta")
    attn = model.layers[0].self_attn
    assert attn.qkv_proj.weight.shape == ((64 + 2 * 8) * 128, 8192)  # GQA: 8 KV heads
    assert model.layers[0].mlp.gate_up_proj.weight.shape == (2 * 28672, 8192)


def test_state_dict_names_and_shapes_follow_the_contract():
    config = LlamaConfig.from_name("tiny", vocab_size=500)  # h 64, 4 heads of 16, 2 KV heads, ffn 176
    model = build_model(config, ParallelState.for_shapes(tp=2, tp_rank=1), device="meta")
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert shapes == {
        "embed_tokens.weight": (256, 64),
        **{k: v for i in range(2) for k, v in {
            f"layers.{i}.input_layernorm.weight": (64,),
            f"layers.{i}.self_attn.qkv_proj.weight": ((4 + 2 * 2) // 2 * 16, 64),
            f"layers.{i}.self_attn.o_proj.weight": (64, 32),
            f"layers.{i}.post_attention_layernorm.weight": (64,),
            f"layers.{i}.mlp.gate_up_proj.weight": (176, 64),
            f"layers.{i}.mlp.down_proj.weight": (64, 88),
        }.items()},
        "norm.weight": (64,),
        "lm_head.weight": (256, 64),
    }


def test_padded_vocabulary_never_wins():
    config = LlamaConfig.from_name("tiny", vocab_size=500)
    model = build_model(config)
    with torch.no_grad():
        model.lm_head.weight[500:] = 100.0  # padded rows that would dominate if unmasked
    ids = torch.randint(0, 500, (2, 8))
    logits = model(ids)
    assert logits.shape == (2, 8, 512)
    assert torch.isneginf(logits[..., 500:]).all() and torch.isfinite(logits[..., :500]).all()
    assert (logits.argmax(-1) < 500).all()
    loss = model(ids, labels=ids)
    assert torch.isfinite(loss).all()
    loss.sum().backward()
    assert torch.isfinite(model.lm_head.weight.grad).all()
    assert (model.lm_head.weight.grad[500:] == 0).all()


def test_added_tokens_beyond_32000():
    """PMC-LLaMA adds [PAD], [author], [bib] to LLaMA's 32000 tokens: 32003 is padded to 32128."""
    config = LlamaConfig.from_name("llama-7b", vocab_size=32003)
    model = build_model(config, device="meta")
    assert model.embed_tokens.weight.shape == (32128, 4096)


@pytest.mark.parametrize("attention_backend", ["sdpa", "math"])
def test_packed_samples_equal_samples_run_alone(attention_backend):
    config = LlamaConfig.from_name("tiny")
    model = build_model(config, options=TransformerOptions(attention_backend=attention_backend))
    g = torch.Generator().manual_seed(0)
    a, b, c = (torch.randint(0, 512, (1, n), generator=g) for n in (5, 7, 4))
    packed = torch.cat([a, b, c], dim=1)  # one row of 16 tokens
    segment_ids = torch.tensor([[0] * 5 + [1] * 7 + [2] * 4])
    position_ids = torch.cat([torch.arange(5), torch.arange(7), torch.arange(4)])[None]
    with torch.no_grad():
        out = model(packed, position_ids=position_ids, segment_ids=segment_ids)
        alone = torch.cat([model(a), model(b), model(c)], dim=1)
    torch.testing.assert_close(out, alone, rtol=1e-5, atol=1e-5)
    # Without segment_ids the later samples would see the earlier ones.
    with torch.no_grad():
        leaky = model(packed, position_ids=position_ids)
    assert not torch.allclose(leaky[:, 5:], alone[:, 5:], atol=1e-3)


def test_recompute_plans():
    assert layer_chunks(5, RecomputeConfig()) == [(i, i + 1, False) for i in range(5)]
    assert layer_chunks(5, RecomputeConfig("full", "uniform", 2)) == [(0, 2, True), (2, 4, True), (4, 5, True)]
    assert layer_chunks(3, RecomputeConfig("full", "block", 2)) == [(0, 1, True), (1, 2, True), (2, 3, False)]
    assert layer_chunks(2, RecomputeConfig("selective")) == [(0, 1, False), (1, 2, False)]
    with pytest.raises(ValueError, match="--recompute-granularity"):
        RecomputeConfig("some")


def test_recompute_gives_the_same_gradients():
    config = LlamaConfig.from_name("tiny", num_layers=3)
    ids = torch.randint(0, 512, (2, 12), generator=torch.Generator().manual_seed(1))
    grads = []
    for options in (TransformerOptions(), TransformerOptions(recompute_granularity="full", recompute_num_layers=2),
                    TransformerOptions(recompute_granularity="selective")):
        model = build_model(config, options=options)
        model(ids, labels=ids).sum().backward()
        grads.append({n: p.grad for n, p in model.named_parameters()})
    for other in grads[1:]:
        for name, g in grads[0].items():
            torch.testing.assert_close(other[name], g, rtol=1e-6, atol=1e-6)


def test_bf16_forward_backward_is_finite_and_close_to_fp32():
    config = LlamaConfig.from_name("tiny")
    ids = torch.randint(0, 512, (2, 16), generator=torch.Generator().manual_seed(2))
    loss32 = build_model(config)(ids, labels=ids)
    model16 = build_model(config, dtype=torch.bfloat16)
    assert model16.lm_head.weight.dtype == torch.bfloat16
    loss16 = model16(ids, labels=ids)
    assert loss16.dtype == torch.float32
    loss16.mean().backward()
    torch.testing.assert_close(loss16, loss32, rtol=0.05, atol=0.05)


def test_bad_tp_size_names_the_flag():
    with pytest.raises(ValueError, match="--tensor-model-parallel-size 3"):
        build_model(LlamaConfig.from_name("tiny"), ParallelState.for_shapes(tp=3), device="meta")


def _saved_bytes(options: TransformerOptions) -> int:
    """Bytes autograd keeps for backward during one forward (what recompute is meant to cut)."""
    config = LlamaConfig.from_name("tiny", num_layers=4)
    model = build_model(config, options=options)
    ids = torch.randint(0, 512, (2, 64), generator=torch.Generator().manual_seed(0))
    total = 0

    def pack(t):
        nonlocal total
        total += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model(ids, labels=ids)
    return total


def test_recompute_saves_fewer_activations():
    none = _saved_bytes(TransformerOptions(attention_backend="math"))
    selective = _saved_bytes(TransformerOptions(attention_backend="math", recompute_granularity="selective"))
    full = _saved_bytes(TransformerOptions(attention_backend="math", recompute_granularity="full",
                                           recompute_num_layers=2))
    # The math core stores [b, n, s, s] scores and probabilities: selective recompute drops them.
    assert selective < none
    assert full < selective / 2
