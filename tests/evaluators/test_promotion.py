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
    assert "fewer than" in fallback.how and fallback.fitted is False
    assert fallback.value == pytest.approx(test[0][0].stats.ens_error(50))
    true = [t.stats.ens_error(50) for _, t in test]
    assert spearmanr([p.score("lo", lo).value for lo, _ in test], true).statistic <= 0.5
    p.fit("lo", train)
    assert "curves ridge" in p.score("lo", test[0][0]).how
    assert "fitted on 12 lo→top pairs" in p.score("lo", test[0][0]).how
    assert p.score("lo", test[0][0]).fitted is True
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


def test_loo_ridge_leave_one_out_error_is_the_brute_force_refit_error():
    """The closed form (residual / (1 − leverage)) against refitting without each pair, 1e-8."""
    from evaluators.promotion import loo_ridge

    rng = np.random.default_rng(1)
    X, y = rng.normal(size=(9, 4)), rng.normal(size=9)
    for alpha in (0.1, 10.0, float("inf")):
        fit = loo_ridge(X, y, alphas=(alpha,))
        chosen, loo = fit.alpha, fit.loo
        assert chosen == alpha
        mu, sd = X.mean(0), X.std(0)  # standardised once on all pairs, as the fit does
        Z = (X - mu) / sd
        A = np.column_stack([np.ones(9), Z[:, :1] if np.isinf(alpha) else Z])
        P = np.diag([0.0, 0.0] + [0.0 if np.isinf(alpha) else alpha] * (A.shape[1] - 2))
        errors = []
        for i in range(9):
            keep = np.arange(9) != i
            w = np.linalg.solve(A[keep].T @ A[keep] + P + 1e-9 * np.eye(A.shape[1]), A[keep].T @ y[keep])
            errors.append((y[i] - A[i] @ w) ** 2)
        assert loo == pytest.approx(np.mean(errors), rel=1e-8)


def test_rung_predictor_keeps_the_rungs_own_order_when_the_curves_are_noise():
    """Top-rung error is a line in the low rung's E_ens; the curves are noise. Leave-one-out
    drops the curve term (α = ∞), so 8 new candidates rank exactly as their low-rung E_ens."""
    from scipy.stats import kendalltau

    rng = np.random.default_rng(2)

    def make(n):
        out = []
        for _ in range(n):
            E = rng.uniform(0.3, 0.5)
            acc = tuple(rng.uniform(0.4, 0.8, 3))
            lo = _result(E=E, acc=acc, loss=tuple(rng.uniform(0.5, 1.5, 3)))
            out.append((lo, _result(E=0.5 * E + rng.normal(0, 0.002))))
        return out

    p = RungPredictor(M=50)
    train, test = make(10), make(8)
    p.fit("lo", train)
    assert "line in lo E_ens" in p.score("lo", test[0][0]).how
    scores = [p.score("lo", lo).value for lo, _ in test]
    assert kendalltau(scores, [lo.stats.ens_error(50) for lo, _ in test]).statistic == pytest.approx(1.0)
