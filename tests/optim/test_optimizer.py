"""Single-process optimizer tests: the same update as torch's AdamW + clip_grad_norm_, skipping on
NaN/Inf, bf16 parameters with fp32 masters, and an exact checkpoint round trip."""
import copy

import pytest
import torch

from megapmc.optim import DataParallel, OptimizerConfig, build_optimizer
from megapmc.parallel.state import ParallelState

from tiny_lm import TinyLM


def _batch(seed, b=4, s=8, vocab=32):
    g = torch.Generator().manual_seed(seed)
    tokens = torch.randint(0, vocab, (b, s + 1), generator=g)
    return tokens[:, :-1], tokens[:, 1:]


def _reference_step(model, opt, tokens, labels, clip):
    opt.zero_grad()
    model(tokens, labels).mean().backward()
    norm = torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
    opt.step()
    return norm.item()


@pytest.mark.parametrize("distributed", [False, True])
@pytest.mark.parametrize("bucket_size", [None, 500])
def test_matches_torch_adamw_with_clipping(distributed, bucket_size):
    torch.manual_seed(0)
    ref = TinyLM()
    model = copy.deepcopy(ref)
    config = OptimizerConfig(lr=1e-2, weight_decay=0.1, clip_grad=0.5, bucket_size=bucket_size,
                             use_distributed_optimizer=distributed)
    ddp = DataParallel(model, config, ParallelState.single())
    opt = build_optimizer(ddp, config, ParallelState.single())
    decay = [p for p in ref.parameters() if p.ndim > 1]
    no_decay = [p for p in ref.parameters() if p.ndim == 1]
    ref_opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
                                lr=1e-2, betas=(0.9, 0.95), eps=1e-8)
    for step in range(4):
        tokens, labels = _batch(step)
        ref_norm = _reference_step(ref, ref_opt, tokens, labels, clip=0.5)
        opt.zero_grad()
        ddp(tokens, labels).mean().backward()
        result = opt.step()
        assert not result.skipped
        assert result.grad_norm == pytest.approx(ref_norm, rel=1e-6)
        assert ref_norm > 0.5, "the test must exercise clipping"
    for (name, p), q in zip(model.named_parameters(), ref.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-6, atol=1e-7, msg=name)


def test_gradient_accumulation_equals_one_big_batch():
    torch.manual_seed(0)
    model = TinyLM()
    big = copy.deepcopy(model)
    config = OptimizerConfig(lr=1e-2, clip_grad=0.0)
    ddp = DataParallel(model, config, ParallelState.single())
    ddp_big = DataParallel(big, config, ParallelState.single())
    tokens, labels = _batch(0, b=6)
    for i in range(3):
        ctx = ddp.no_sync() if i < 2 else torch.enable_grad()
        with ctx:
            (ddp(tokens[2 * i:2 * i + 2], labels[2 * i:2 * i + 2]).mean() / 3).backward()
    ddp.finish_grad_sync()
    ddp_big(tokens, labels).mean().backward()
    ddp_big.finish_grad_sync()
    for p, q in zip(model.parameters(), big.parameters()):
        assert p.grad is None  # gradients live in the buffer only
        torch.testing.assert_close(p.main_grad, q.main_grad, rtol=1e-6, atol=1e-7)


def test_backward_after_the_sync_is_an_error_not_a_silent_wrong_gradient():
    model = TinyLM()
    ddp = DataParallel(model, OptimizerConfig(), ParallelState.single())
    tokens, labels = _batch(0)
    ddp(tokens, labels).mean().backward()  # last micro-batch: buckets reduced from the hooks
    with pytest.raises(RuntimeError, match="no_sync"):
        ddp(tokens, labels).mean().backward()
    ddp.zero_grad_buffer()
    ddp(tokens, labels).mean().backward()
    ddp.finish_grad_sync()


def test_nan_gradient_skips_the_step_and_leaves_everything_untouched():
    torch.manual_seed(0)
    model = TinyLM()
    config = OptimizerConfig(lr=1e-2)
    ddp = DataParallel(model, config, ParallelState.single())
    opt = build_optimizer(ddp, config, ParallelState.single())
    tokens, labels = _batch(0)
    ddp(tokens, labels).mean().backward()
    opt.step()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    state_before = {k: v.clone() for k, v in opt.sharded_state_dict().items()}
    opt.zero_grad()
    (ddp(tokens, labels).mean() * float("inf")).backward()
    result = opt.step()
    assert result.skipped and not torch.isfinite(torch.tensor(result.grad_norm))
    for n, p in model.named_parameters():
        torch.testing.assert_close(p, before[n], rtol=0, atol=0)
    for k, v in opt.sharded_state_dict().items():
        torch.testing.assert_close(v, state_before[k], rtol=0, atol=0)
    opt.zero_grad()
    ddp(tokens, labels).mean().backward()
    assert not opt.step().skipped  # training goes on after a skipped step


def test_norm_weights_are_not_decayed():
    model = TinyLM()
    config = OptimizerConfig(lr=1e-2, weight_decay=0.5)
    ddp = DataParallel(model, config, ParallelState.single())
    opt = build_optimizer(ddp, config, ParallelState.single())
    by_decay = {g["weight_decay"]: sum(p.numel() for p in g["params"]) for g in opt.param_groups}
    assert by_decay == {0.5: 32 * 16 + 16 * 48 + 48 * 32, 0.0: 16}


@pytest.mark.parametrize("distributed", [False, True])
def test_bf16_params_have_fp32_masters(distributed):
    torch.manual_seed(0)
    model = TinyLM().to(torch.bfloat16)
    config = OptimizerConfig(lr=1e-3, bf16=True, use_distributed_optimizer=distributed)
    ddp = DataParallel(model, config, ParallelState.single())
    opt = build_optimizer(ddp, config, ParallelState.single())
    assert all(s.master.dtype == torch.float32 for s in opt.shards)
    assert all(p.main_grad.dtype == torch.float32 for p in model.parameters())
    tokens, labels = _batch(0)
    for _ in range(3):
        opt.zero_grad()
        ddp(tokens, labels).mean().backward()
        assert not opt.step().skipped
    for s in opt.shards:
        # The parameter is the rounded master; the master keeps updates smaller than a bf16 ulp.
        torch.testing.assert_close(s.model_view, s.master.to(torch.bfloat16), rtol=0, atol=0)
    assert any(not torch.equal(s.master, s.model_view.float()) for s in opt.shards)


@pytest.mark.parametrize("distributed", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_sharded_state_dict_round_trip_resumes_exactly(distributed, dtype):
    config = OptimizerConfig(lr=1e-2, weight_decay=0.1, bf16=dtype == torch.bfloat16,
                             use_distributed_optimizer=distributed, bucket_size=700)

    def build():
        torch.manual_seed(0)
        model = TinyLM().to(dtype)
        ddp = DataParallel(model, config, ParallelState.single())
        return model, ddp, build_optimizer(ddp, config, ParallelState.single())

    def train(model, ddp, opt, steps):
        for step in steps:
            tokens, labels = _batch(step)
            opt.zero_grad()
            ddp(tokens, labels).mean().backward()
            opt.step()

    model, ddp, opt = build()
    train(model, ddp, opt, range(4))
    model2, ddp2, opt2 = build()
    train(model2, ddp2, opt2, range(2))
    saved_model = {k: v.clone() for k, v in model2.state_dict().items()}
    saved_optim = {k: v.clone() for k, v in opt2.sharded_state_dict().items()}
    model3, ddp3, opt3 = build()  # a fresh process: load the model, then the optimizer shard
    model3.load_state_dict(saved_model)
    opt3.reload_model_params()
    opt3.load_sharded_state_dict(saved_optim)
    train(model3, ddp3, opt3, range(2, 4))
    for (n, p), q in zip(model.named_parameters(), model3.parameters()):
        torch.testing.assert_close(p, q, rtol=0, atol=0, msg=n)


def test_load_rejects_a_shard_from_another_layout():
    config = OptimizerConfig(use_distributed_optimizer=True, bucket_size=None)
    ddp = DataParallel(TinyLM(), config, ParallelState.single())
    opt = build_optimizer(ddp, config, ParallelState.single())
    sd = dict(opt.sharded_state_dict())
    sd["up.weight.range"] = torch.tensor([0, 10, 16 * 48])
    with pytest.raises(ValueError, match="another data-parallel size"):
        opt.load_sharded_state_dict(sd)
    del sd["up.weight.range"]
    with pytest.raises(ValueError, match="missing"):
        opt.load_sharded_state_dict(sd)


def _split(sd, name, cut):
    """Two DP-style shards of ``name``'s state, cut at element ``cut``."""
    start, end, numel = sd[f"{name}.range"].tolist()
    lo, hi = {}, {}
    lo[f"{name}.range"] = torch.tensor([0, cut, numel])
    hi[f"{name}.range"] = torch.tensor([cut, numel, numel])
    for kind in ("exp_avg", "exp_avg_sq", "master"):
        if f"{name}.{kind}" in sd:
            lo[f"{name}.{kind}"], hi[f"{name}.{kind}"] = sd[f"{name}.{kind}"][:cut], sd[f"{name}.{kind}"][cut:]
    lo[f"{name}.step"] = hi[f"{name}.step"] = sd[f"{name}.step"]
    return lo, hi


def test_merge_reassembles_dp_shards_and_reports_gaps():
    from megapmc.optim import merge_sharded_state_dicts

    config = OptimizerConfig(lr=1e-2, bf16=True)
    ddp = DataParallel(TinyLM().to(torch.bfloat16), config, ParallelState.single())
    opt = build_optimizer(ddp, config, ParallelState.single())
    tokens, labels = _batch(0)
    ddp(tokens, labels).mean().backward()
    opt.step()
    sd = {k: v.clone() for k, v in opt.sharded_state_dict().items()}
    lo, hi = _split(sd, "up.weight", 100)
    rest = {k: v for k, v in sd.items() if not k.startswith("up.weight.")}
    merged = merge_sharded_state_dicts([{**lo, **rest}, hi])
    assert merged.keys() == sd.keys()
    for k in sd:
        torch.testing.assert_close(merged[k], sd[k], rtol=0, atol=0)
    with pytest.raises(ValueError, match="cover"):
        merge_sharded_state_dicts([{**lo, **rest}])
    hi["up.weight.step"] = hi["up.weight.step"] + 1
    with pytest.raises(ValueError, match="different steps"):
        merge_sharded_state_dicts([{**lo, **rest}, hi])
