import math

import pytest

from megapmc.optim.lr_schedule import LRScheduleConfig, LRScheduler, lr_at


def test_warmup_then_cosine_values():
    cfg = LRScheduleConfig(lr=1.0, min_lr=0.1, lr_decay_style="cosine", lr_warmup_iters=4, lr_decay_iters=14)
    assert [lr_at(cfg, s) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert lr_at(cfg, 4) == 1.0  # decay starts at the peak
    assert lr_at(cfg, 9) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.5)))  # halfway: 0.55
    assert lr_at(cfg, 9) == pytest.approx(0.55)
    assert lr_at(cfg, 14) == 0.1
    assert lr_at(cfg, 1000) == 0.1


def test_linear_and_constant():
    lin = LRScheduleConfig(lr=2e-5, min_lr=0.0, lr_decay_style="linear", lr_decay_iters=100)
    assert lr_at(lin, 0) == 2e-5
    assert lr_at(lin, 25) == pytest.approx(1.5e-5)
    assert lr_at(lin, 100) == 0.0
    const = LRScheduleConfig(lr=3e-4, lr_decay_style="constant", lr_warmup_iters=2)
    assert [lr_at(const, s) for s in (0, 1, 2, 500)] == [1.5e-4, 3e-4, 3e-4, 3e-4]


def test_warmup_fraction_resolves_against_decay_length():
    cfg = LRScheduleConfig(lr=1.0, lr_warmup_fraction=0.1).resolve(train_iters=200)
    assert (cfg.lr_warmup_iters, cfg.lr_decay_iters) == (20, 200)
    assert lr_at(cfg, 9) == pytest.approx(0.5)


def test_scheduler_state_round_trip():
    cfg = LRScheduleConfig(lr=1.0, lr_decay_style="linear", lr_decay_iters=10)
    a = LRScheduler(cfg)
    for _ in range(3):
        a.step()
    b = LRScheduler(cfg)
    b.load_state_dict(a.state_dict())
    assert b.num_steps == 3 and b.get_lr() == a.get_lr() == pytest.approx(0.7)


@pytest.mark.parametrize("kwargs, message", [
    (dict(lr=1.0, lr_decay_style="step"), "--lr-decay-style"),
    (dict(lr=1.0, min_lr=2.0), "--min-lr"),
    (dict(lr=1.0, lr_warmup_iters=10, lr_decay_iters=5), "--lr-decay-iters"),
    (dict(lr=1.0, lr_warmup_iters=3, lr_warmup_fraction=0.1), "only one of"),
    (dict(lr=1.0, lr_warmup_fraction=1.5), "--lr-warmup-fraction"),
])
def test_bad_schedules_say_which_flag(kwargs, message):
    with pytest.raises(ValueError, match=message):
        LRScheduleConfig(**kwargs)
