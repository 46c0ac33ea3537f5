"""The megapmc backend's one-forward-per-item scoring (context prefilled once into a KV cache, every
choice scored from it) equals the per-choice reference within 1e-4, at TP=1 and TP=2."""
import json

import pytest
import torch

from megapmc.evaluation.backends import CausalLMBackend, MegapmcBackend
from megapmc.model.config import LlamaConfig
from megapmc.model.llama import build_model
from megapmc.parallel.state import ParallelState
from megapmc.testing.distributed import run_distributed


class _Tok:
    bos_id, eos_id = 1, 2


def _groups(seed=3, max_ctx=40):
    g = torch.Generator().manual_seed(seed)
    rand = lambda n: torch.randint(3, 256, (n,), generator=g).tolist()  # noqa: E731
    groups = []
    for n_ctx in (5, 23, 1, max_ctx, 12, 9, 30):
        # Single- and multi-token choices mixed, and items with different choice counts in one batch.
        n_choices = 3 + n_ctx % 3
        groups.append(([1] + rand(n_ctx), [rand(1 + (k * n_ctx) % 4) for k in range(n_choices)]))
    return groups


def _backend(parallel=None, max_length=None, batch_size=3):
    config = LlamaConfig.from_name("tiny", vocab_size=256, init_method_std=0.3, max_position_embeddings=128)
    model = build_model(config, parallel or ParallelState.single(), device=torch.device("cpu"), seed=7)
    return MegapmcBackend(model, _Tok(), batch_size=batch_size, max_length=max_length, show_progress=False)


def _compare(backend, groups):
    shared = backend.loglikelihood_grouped(groups)
    reference = CausalLMBackend.loglikelihood_grouped(backend, groups)
    for a, b in zip(shared, reference):
        assert [r.logprob for r in a] == pytest.approx([r.logprob for r in b], abs=1e-4)
        assert [r.is_greedy for r in a] == [r.is_greedy for r in b]
    return shared


def test_shared_prefix_equals_per_choice():
    _compare(_backend(), _groups())


def test_one_forward_per_batch_of_items():
    backend = _backend(batch_size=4)
    calls = []
    backend.model.register_forward_hook(lambda m, args, out: calls.append(args[0].shape))
    single_token = [(ctx, [c[:1] for c in conts]) for ctx, conts in _groups()]
    backend.loglikelihood_grouped(single_token)
    assert len(calls) == 2  # 7 items in batches of 4; one forward of the contexts each, nothing more
    calls.clear()
    backend.loglikelihood_grouped(_groups())
    # 3 items whose choices fit one row (all but one choice a single token): one forward; 4 others: a
    # prefill plus one pass over every choice's remaining tokens.
    assert [tuple(c) for c in calls] == [(3, 41), (4, 24), (4 * 5, 3)]


def test_groups_needing_truncation_use_the_reference():
    backend = _backend(max_length=24)
    _compare(backend, _groups(max_ctx=40))


def _tp_worker(rank, world_size, out_path):
    from megapmc.parallel.state import initialize_parallel

    backend = _backend(initialize_parallel(world_size))
    scores = backend.loglikelihood_grouped(_groups())
    with open(f"{out_path}.{rank}", "w") as f:
        json.dump([[r.logprob for r in item] for item in scores], f)


@pytest.mark.slow
@pytest.mark.distributed
def test_tp2_shared_prefix_equals_tp1_reference(tmp_path):
    reference = CausalLMBackend.loglikelihood_grouped(_backend(), _groups())
    run_distributed(_tp_worker, 2, str(tmp_path / "tp"))
    for rank in range(2):
        got = json.loads((tmp_path / f"tp.{rank}").read_text())
        for a, b in zip(got, reference):
            assert a == pytest.approx([r.logprob for r in b], abs=1e-4)
