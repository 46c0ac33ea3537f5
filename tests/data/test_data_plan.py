"""The data plan, checked on the paper's numbers: 4B/75B/1.2T tokens, seq 2048, batch 3200, 5 book epochs."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from blend_helpers import make_sources
from megapmc.data.blended_dataset import build_pretraining_datasets, plan_from_config
from megapmc.data.config import DataConfig
from megapmc.data.data_plan import integer_weights, make_plan
from megapmc.parallel.state import ParallelState

ROOT = Path(__file__).resolve().parents[2]
PAPER = dict(names=["books", "papers", "general"], weights=[15, 4, 1], tokens=[4e9, 75e9, 1.2e12],
             seq_length=2048, global_batch_size=3200)


def test_paper_plan():
    plan = make_plan(**PAPER, train_epochs=5)
    books, papers, general = plan.sources
    # One book epoch: (4e9 - 1) // 2048 = 1,953,124 samples; 2400 per batch; 5 epochs fit in 4069 batches.
    assert books.samples_per_epoch == 1_953_124
    assert [s.min_per_batch for s in plan.sources] == [s.max_per_batch for s in plan.sources] == [2400, 640, 160]
    assert plan.train_iters == 4069 and plan.train_samples == 4069 * 3200 == 13_020_800
    assert [s.samples for s in plan.sources] == [9_765_600, 2_604_160, 651_040]
    assert books.tokens_consumed == 9_765_600 * 2048 == 19_999_948_800
    assert books.epochs == pytest.approx(5.0, abs=2e-4) and books.epochs <= 5 and books.repeats == 4
    assert papers.epochs == pytest.approx(2_604_160 / 36_621_093) and papers.repeats == 0
    assert general.epochs == pytest.approx(651_040 / 585_937_499) and general.repeats == 0
    assert plan.epoch_source == "books"
    table = plan.table()
    assert "4,069 iterations" in table and "9,765,600" in table and "2400" in table


def test_epoch_source_other_than_the_first():
    plan = make_plan(**PAPER, train_epochs=0.5, epoch_source=1)
    assert plan.epoch_source == "papers"
    assert plan.sources[1].epochs == pytest.approx(0.5, abs=1e-4) and plan.sources[1].epochs <= 0.5
    assert plan.train_iters == (36_621_093 // 2) // 640


def test_iterations_and_samples():
    by_iters = make_plan(**PAPER, train_iters=10)
    assert by_iters.train_samples == 32_000 and [s.samples for s in by_iters.sources] == [24_000, 6_400, 1_600]
    odd = make_plan(["a", "b"], [2, 1], [10_000, 10_000], 10, 9, train_samples=20)
    assert odd.train_iters == 3 and sum(s.samples for s in odd.sources) == 20
    assert [s.samples_per_batch for s in odd.sources] == [6, 3]


def test_plan_errors():
    with pytest.raises(ValueError, match="exactly one"):
        make_plan(**PAPER, train_epochs=5, train_iters=3)
    with pytest.raises(ValueError, match="'general' holds 100 tokens, fewer than one sample"):
        make_plan(PAPER["names"], [15, 4, 1], [4e9, 75e9, 100], 2048, 3200, train_iters=1)
    with pytest.raises(ValueError, match="positive"):
        integer_weights([1, 0])


@pytest.mark.slow
def test_cli_plans_the_paper_from_token_counts():
    out = subprocess.run(
        [sys.executable, str(ROOT / "tools/data_plan.py"), "--tokens-per-source", "4e9,75e9,1.2e12",
         "--seq-length", "2048", "--global-batch-size", "3200", "--train-epochs", "5", "--json"],
        check=True, capture_output=True, text=True).stdout
    plan = json.loads(out)
    assert plan["train_iters"] == 4069
    assert [s["samples"] for s in plan["sources"]] == [9_765_600, 2_604_160, 651_040]
    assert [s["name"] for s in plan["sources"]] == ["books", "papers", "general"]


def test_plan_from_shards_matches_the_built_datasets(tmp_path):
    prefixes = make_sources(tmp_path / "data")
    config = DataConfig(["15", prefixes[0], "4", prefixes[1], "1", prefixes[2]], split="1",
                        cache_dir=str(tmp_path / "cache"))
    plan = plan_from_config(config, 32, 40, train_epochs=3)
    train, _, _, built_plan = build_pretraining_datasets(config, 32, 40, None, 3, 1, ParallelState.single(),
                                                         verbose=False)
    assert plan == built_plan
    assert [len(ds) for ds in train.datasets] == [s.samples for s in plan.sources] == train.source_samples
    assert plan.sources[0].samples <= 3 * plan.sources[0].samples_per_epoch
