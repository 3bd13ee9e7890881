"""The multi-fidelity predictor and the promotion rules."""

import numpy as np
import pytest

from evaluators.dual import learner_steps
from evaluators.fidelity import parse_schedule
from evaluators.promotion import MIN_PAIRS, RungPredictor, curve_row, opportunistic, successive_halving
from evaluators.results import Curves, EvalResult, LearnerResult


def _result(E, sigma2=0.2, rho=0.5, acc=(0.5, 0.6, 0.7), loss=(1.0, 0.8, 0.6)):
    learners = [LearnerResult(seed=s, val_acc=acc[-1], val_nll=1.0, val_brier=E,
                              curves=Curves(train_loss=list(loss), val_acc=list(acc),
                                            grad_norm=[1.0, 0.9, 0.8])) for s in (0, 1)]
    return EvalResult(spec_hash=f"h{E}", fidelity="lo", seeds=(0, 1), E=E, sigma2=sigma2, rho=rho,
                      ci={}, se={}, learners=learners, npz="x.npz", wall_s=0.0, device_s=0.0,
                      params=1000, flops=10**6)


def test_successive_halving_keeps_the_top_third_and_outliers_are_flagged():
    scores = {"a": 0.30, "b": 0.10, "c": 0.20, "d": 0.40, "e": 0.50, "f": 0.25}
    assert successive_halving(scores, 3) == ["b", "c"]
    assert successive_halving({"a": 0.1, "b": 0.2}, 3) == []
    flat = {"a": 0.30, "b": 0.31, "c": 0.29, "d": 0.30, "x": 0.05}
    assert opportunistic(flat, "x") and not opportunistic(flat, "a")
    assert not opportunistic({"a": 0.3, "x": 0.0}, "x")  # too few to call an outlier


def test_rung_predictor_falls_back_then_learns_the_curve_to_top_rung_map():
    """Top-rung error here depends on the low rung's late accuracy rise, which the low rung's
    own E_ens does not show: after fitting on 12 pairs the predictor ranks 8 new candidates
    right (Spearman ≥ 0.9), the fallback does not (≤ 0.5)."""
    from scipy.stats import spearmanr

    rng = np.random.default_rng(0)

    def make(n):
        out = []
        for _ in range(n):
            rise = rng.uniform(0, 0.3)
            lo = _result(E=0.40 + rng.normal(0, 0.005), acc=(0.5, 0.6, 0.6 + rise))
            top = _result(E=0.30 - 0.5 * rise)
            out.append((lo, top))
        return out

    p = RungPredictor(M=50)
    train, test = make(12), make(8)
    p.fit("lo", train[: MIN_PAIRS - 1])
    fallback = p.score("lo", test[0][0])
    assert "fewer than" in fallback.how
    assert fallback.value == pytest.approx(test[0][0].stats.ens_error(50))
    true = [t.stats.ens_error(50) for _, t in test]
    assert spearmanr([p.score("lo", lo).value for lo, _ in test], true).statistic <= 0.5
    p.fit("lo", train)
    assert "ridge on 12" in p.score("lo", test[0][0]).how
    assert spearmanr([p.score("lo", lo).value for lo, _ in test], true).statistic >= 0.9
    assert curve_row(test[0][0], 50).shape == (10,)


def test_schedule_names_rungs_and_refuses_bad_ones():
    rungs = parse_schedule("low:2,low,medium")
    assert [r.name for r in rungs] == ["low-2ep", "low", "medium"]
    assert rungs[0].epochs == 2 and rungs[0].width_mult == rungs[1].width_mult
    for bad, needle in (("low,low", "twice"), ("medium,low", "cost more"), ("ultra", "'ultra'"),
                        ("low:x", "'low:x'")):
        with pytest.raises(ValueError, match=needle):
            parse_schedule(bad)


def test_batch_size_replaces_every_rungs_minibatch_so_steps_grow_and_cost_does_not():
    default, small = parse_schedule("low:3,medium"), parse_schedule("low:3,medium", 32)
    assert [r.batch_size for r in default] == [128, 128] and [r.batch_size for r in small] == [32, 32]
    assert [r.name for r in small] == [r.name for r in default]
    assert [r.learner_epochs() for r in small] == [r.learner_epochs() for r in default]
    # 397 training samples: 3 full batches of 128 per epoch, 12 of 32 (the partial one dropped)
    assert [learner_steps(r, 397) for r in default] == [3 * 3, 15 * 3]
    assert [learner_steps(r, 397) for r in small] == [3 * 12, 15 * 12]
    with pytest.raises(ValueError, match="rung 'low': batch_size 0: Input should be greater"):
        parse_schedule("low", 0)
