"""Progress inside an evaluation (issue 15): one tick per learner-epoch, an ETA from the fraction
done, and a timeout that states its limit and where it cut."""

import time

import pytest
import torch
from torch import nn

from evaluators.train import EpochTick, TimeLimitExceeded, TrainData, train_learners


def data(n=64, d=8, k=3):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, d, generator=g)
    y = torch.randint(0, k, (n,), generator=g)
    return TrainData(x, y, x[:16], y[:16], x[:16])


def factory():
    return nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3))


@pytest.mark.parametrize("packed", [False, True])
def test_one_tick_per_epoch_with_learner_epoch_and_a_fraction_that_reaches_one(packed):
    ticks = []
    train_learners(factory, data(), seeds=[0, 1, 2], epochs=3, batch_size=16, lr=1e-2,
                   packed=packed, threads=1, on_epoch=ticks.append)
    if packed:
        assert [(t.learner, t.epoch) for t in ticks] == [(3, 1), (3, 2), (3, 3)]
        assert [t.where() for t in ticks][-1] == "learners 1-3/3, epoch 3/3"
    else:
        assert [(t.learner, t.epoch) for t in ticks] == [(i, e) for i in (1, 2, 3) for e in (1, 2, 3)]
        assert ticks[4].where() == "learner 2/3, epoch 2/3"
    fractions = [t.fraction for t in ticks]
    assert fractions == sorted(fractions) and fractions[-1] == pytest.approx(1.0, abs=1e-12)
    assert all(t.learners == 3 and t.epochs == 3 for t in ticks)


def test_a_timeout_states_its_limit_and_the_last_epoch_finished():
    slow = lambda tick: time.sleep(0.6)  # noqa: E731 — each epoch "takes" 0.6 s
    with pytest.raises(TimeLimitExceeded) as err:
        train_learners(factory, data(), seeds=[0, 1], epochs=4, batch_size=16, lr=1e-2,
                       threads=1, deadline=time.monotonic() + 0.3, on_epoch=slow)
    assert "time limit of 0.3 s" in str(err.value)
    assert "after learner 1/2, epoch 1/4" in str(err.value)
    assert err.value.tick == EpochTick(1, 2, 1, 4)
    with pytest.raises(TimeLimitExceeded, match="during the first epoch"):
        train_learners(factory, data(), seeds=[0, 1], epochs=2, batch_size=16, lr=1e-2,
                       threads=1, deadline=time.monotonic() - 1)


def test_live_progress_shows_learner_epoch_and_eta():
    from rich.console import Console

    from agent.config import RunConfig
    from agent.progress import LiveProgress, eta_seconds

    assert eta_seconds(10.0, 0.25) == pytest.approx(30.0) and eta_seconds(5.0, 0.0) is None
    progress = LiveProgress(Console(file=open("/dev/null", "w")), RunConfig())
    on_epoch = progress.training("baseline")
    assert progress.training_text("baseline") == "baseline: starting"
    on_epoch(EpochTick(1, 2, 3, 10))
    text = progress.training_text("baseline")
    assert text.startswith("baseline: learner 1/2, epoch 3/10 · ETA ") and text.endswith(" s")
    t = progress.last_ticks["baseline"]
    assert t.full_s == pytest.approx(t.elapsed_s / 0.15)
    assert list(progress.started) == ["baseline"]  # in flight until its training returns
    progress.finished("baseline")
    assert not progress.started and "baseline" not in progress.last_ticks


def test_packs_of_at_most_pack_size_tick_their_own_learners_and_the_fraction_still_reaches_one():
    ticks = []
    runs = train_learners(factory, data(), seeds=[0, 1, 2, 3, 4], epochs=2, batch_size=16,
                          lr=1e-2, packed=True, pack_size=2, threads=1, on_epoch=ticks.append)
    assert [r.seed for r in runs] == [0, 1, 2, 3, 4]
    # ⌈5 / 2⌉ = 3 packs of near-equal size: 2, 2, 1 learners
    assert [(t.first, t.learner, t.epoch) for t in ticks] == [
        (1, 2, 1), (1, 2, 2), (3, 4, 1), (3, 4, 2), (5, 5, 1), (5, 5, 2)]
    assert ticks[2].where() == "learners 3-4/5, epoch 1/2"
    assert [t.fraction for t in ticks] == pytest.approx([0.2, 0.4, 0.6, 0.8, 0.9, 1.0])
    with pytest.raises(ValueError, match="pack_size must be >= 1, got 0"):
        train_learners(factory, data(), seeds=[0, 1], epochs=1, batch_size=16, lr=1e-2,
                       packed=True, pack_size=0)
