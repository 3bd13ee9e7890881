"""Strategy 2: the per-field surrogate fitted from residuals, and the constrained search."""

import numpy as np
import pytest
import torch

from evaluators.edas.differentiable import FieldSurrogate, constrained_search, fit_surrogate

F = 39


def _simulated_pool(b: np.ndarray, v: np.ndarray, A: float, H: float, P: int = 40, n: int = 3000):
    """P learners with Bernoulli(0.5) masks whose click probability is 0.5 + a residual drawn
    from the per-field model (scalar variances b, v, A, H); every label is 0."""
    rng = np.random.default_rng(1)
    masks = rng.random((P, F)) < 0.5
    common = rng.normal(0, np.sqrt(A), n)
    signal = rng.normal(0, 1, (n, F)) * np.sqrt(b)
    shared = rng.normal(0, 1, (n, F)) * np.sqrt(v)
    p1 = np.stack([0.5 + common + signal @ (1 - m) + shared @ m + rng.normal(0, np.sqrt(H), n)
                   for m in masks.astype(float)])
    assert 0 < p1.min() and p1.max() < 1
    probs = np.stack([1 - p1, p1], axis=2)
    return masks, probs, np.zeros(n, dtype=np.int64)


def test_surrogate_fitted_from_residuals_predicts_sigma2_and_cov():
    rng = np.random.default_rng(0)
    b = np.where(np.arange(F) < 10, 0.0006, 0.0)
    v = rng.uniform(0, 0.0003, F)
    A, H = 0.001, 0.0005
    masks, probs, labels = _simulated_pool(b, v, A, H)
    fit = fit_surrogate(masks, probs, labels)
    # 2-class residuals (−p, p) double every scalar variance
    truth = FieldSurrogate(m=0.5, A=2 * A, H=2 * H, b=2 * b, v=2 * v)
    for pi in (np.ones(F), np.full(F, 0.5), np.linspace(0.1, 1, F)):
        pi_t = torch.tensor(pi)
        for got, want in zip(fit.stats(pi_t), truth.stats(pi_t), strict=True):
            assert float(got) == pytest.approx(float(want), rel=0.1)
    # the fields that carry lost signal b have larger fitted b than the rest
    assert fit.b[:10].mean() > 2 * fit.b[10:].mean()


def test_search_keeps_signal_fields_and_drops_shared_error_fields():
    b = np.where(np.arange(F) < 10, 0.004, 0.0)
    v = np.where(np.arange(F) < 10, 0.0, 0.002)
    sur = FieldSurrogate(m=0.0, A=0.1, H=0.01, b=b, v=v)
    pi, steps = constrained_search(sur, np.ones(F), M=8, kappa=0.0, steps=300, lr=0.05)
    assert steps[-1].multiplier == 0.0  # minimising E_ens itself never violates the constraint
    assert pi[:10].min() > 0.9 and pi[10:].max() < 0.3
    assert steps[-1].ens < steps[0].ens


def test_search_satisfies_its_constraint_on_the_surrogate_when_it_binds():
    sur = FieldSurrogate(m=0.0, A=0.2, H=0.01, b=np.full(F, 0.004), v=np.full(F, 0.002))
    pi, steps = constrained_search(sur, np.ones(F), M=8, kappa=0.5, steps=300, lr=0.02)
    assert len(steps) == 301 and all(len(s.pi) == F for s in steps)
    assert all(0.05 <= min(s.pi) and max(s.pi) <= 1 for s in steps)
    final = next(s for s in steps if np.allclose(s.pi, pi))
    # κ = 0.5 prices fields far above their effect on E_ens: unconstrained, π would collapse,
    # so the constraint must have been hit and pushed back by the multiplier
    assert max(s.constraint for s in steps) > 0 and max(s.multiplier for s in steps) > 0
    assert final.constraint <= 0.0
    ones = torch.ones(F, dtype=torch.float64)
    assert float(sur.ensemble_error(torch.tensor(pi), 8)) <= float(sur.ensemble_error(ones, 8))
    assert final.mean_pi < 0.95  # and it did trade: fewer fields at no loss in E_ens
    assert final.constraint > -2e-3  # close to the boundary, where the price pushes it


def test_search_rejects_a_start_outside_the_box():
    sur = FieldSurrogate(m=0.0, A=0.2, H=0.01, b=np.full(F, 0.004), v=np.full(F, 0.002))
    with pytest.raises(ValueError, match="pi_old"):
        constrained_search(sur, np.full(F, 0.01), M=8, pi_min=0.05)
