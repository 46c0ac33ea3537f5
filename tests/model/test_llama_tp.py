"""Every tensor-parallel layout computes the TP = 1 function: logits, loss and every gradient within
1e-5 (fp32), with sequence parallelism, activation recompute, GQA (KV heads split across ranks), a
padded vocabulary and packed samples."""
import pytest
import torch

from megapmc.model import LlamaConfig, TransformerOptions, build_model
from megapmc.parallel import initialize_parallel
from megapmc.testing.distributed import local_slices, run_distributed

TOL = dict(rtol=1e-5, atol=1e-5)

VARIANTS = {
    "plain": TransformerOptions(),
    "sequence_parallel": TransformerOptions(sequence_parallel=True),
    "full_recompute_uniform": TransformerOptions(recompute_granularity="full", recompute_num_layers=2),
    "sp_selective_recompute": TransformerOptions(sequence_parallel=True, recompute_granularity="selective"),
    "sp_full_recompute_block": TransformerOptions(sequence_parallel=True, recompute_granularity="full",
                                                  recompute_method="block", recompute_num_layers=1),
}


def _batch(config, b=2, s=8, packed=False):
    g = torch.Generator().manual_seed(7)
    ids = torch.randint(0, config.vocab_size, (b, s), generator=g)
    labels = torch.randint(0, config.vocab_size, (b, s), generator=g)
    if not packed:
        return ids, labels, None, None
    segment_ids = torch.tensor([[0] * 3 + [1] * 5, [0] * 6 + [1] * 2])[:b]
    position_ids = torch.tensor([list(range(3)) + list(range(5)), list(range(6)) + list(range(2))])[:b]
    return ids, labels, position_ids, segment_ids


def _reference(config, batch):
    model = build_model(config, options=TransformerOptions(attention_backend="math", kernel_backend="torch"))
    ids, labels, position_ids, segment_ids = batch
    logits = model(ids, position_ids=position_ids, segment_ids=segment_ids)
    loss = model(ids, position_ids=position_ids, segment_ids=segment_ids, labels=labels)
    loss.sum().backward()
    return logits.detach(), loss.detach(), {n: p.grad for n, p in model.named_parameters()}, model


def _check_tp(rank, world_size, config, cases):
    """``cases``: (variant name, packed) pairs, each checked against the TP = 1 reference."""
    parallel = initialize_parallel(world_size)
    references = {}
    for name, packed in cases:
        batch = _batch(config, packed=packed)
        if packed not in references:
            references[packed] = _reference(config, batch)
        ref_logits, ref_loss, ref_grads, ref_model = references[packed]
        ids, labels, position_ids, segment_ids = batch
        what = f"{name}{' packed' if packed else ''}"
        model = build_model(config, parallel, VARIANTS[name])
        # Init is TP-size independent: the full weights equal the reference's.
        for pname, local in local_slices(model, ref_model.state_dict()).items():
            torch.testing.assert_close(model.state_dict()[pname], local, rtol=0, atol=0, msg=pname)
        logits = model(ids, position_ids=position_ids, segment_ids=segment_ids)
        local_ref = ref_logits[..., model.vocab_start:model.vocab_start + logits.shape[-1]]
        torch.testing.assert_close(logits, local_ref, **TOL, msg=f"{what}: logits")
        torch.testing.assert_close(model.gather_logits(logits), ref_logits[..., :config.vocab_size], **TOL)
        loss = model(ids, position_ids=position_ids, segment_ids=segment_ids, labels=labels)
        torch.testing.assert_close(loss, ref_loss, **TOL, msg=f"{what}: loss")
        loss.sum().backward()
        expected = local_slices(model, ref_grads)
        for pname, p in model.named_parameters():
            torch.testing.assert_close(p.grad, expected[pname], **TOL, msg=f"{what}: grad of {pname}")


# GQA: 8 query heads and 4 KV heads split over 4 ranks keeps one KV group per rank at TP=4.
GQA = LlamaConfig.from_name("tiny", num_attention_heads=8, num_key_value_heads=4, vocab_size=500)


@pytest.mark.slow
@pytest.mark.distributed
def test_tp2_matches_tp1():
    cases = [(name, False) for name in VARIANTS] + [("plain", True), ("sp_selective_recompute", True)]
    run_distributed(_check_tp, 2, GQA, cases)


@pytest.mark.slow
@pytest.mark.distributed
def test_tp4_matches_tp1():
    run_distributed(_check_tp, 4, GQA, [("plain", False), ("sp_full_recompute_block", False)])
