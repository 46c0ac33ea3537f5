import sentencepiece as spm
import torch
import torch.distributed as dist

from megapmc.testing.distributed import run_distributed


def test_sentencepiece_fixture_is_llama_like(spm_model):
    sp = spm.SentencePieceProcessor(model_file=str(spm_model))
    assert (sp.bos_id(), sp.eos_id(), sp.unk_id()) == (1, 2, 0)
    assert sp.vocab_size() == 512
    ids = sp.encode("The patient presents with chest pain.")
    assert sp.decode(ids) == "The patient presents with chest pain."


def _sum_ranks(rank, world_size):
    t = torch.tensor([float(rank)])
    dist.all_reduce(t)
    assert t.item() == sum(range(world_size))


def _fail_on_rank_one(rank, world_size):
    if rank == 1:
        raise ValueError("planted failure")


def test_run_distributed_all_reduce():
    run_distributed(_sum_ranks, 2)


def test_run_distributed_reports_rank_failure():
    import pytest

    with pytest.raises(RuntimeError, match="planted failure"):
        run_distributed(_fail_on_rank_one, 2)
