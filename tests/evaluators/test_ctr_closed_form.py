"""Strategy 1: the overlap probabilities and residual forms behind the closed-form bagging rate."""

from itertools import combinations

import numpy as np
import pytest

from evaluators.edas.closed_form import THETA, design_rows, fit_forms, inclusion, optimal_rate
from spaces.ctr import N_FIELDS, REFERENCE, CTRSpec, learner_mask

PAIRS = np.array(list(combinations(range(N_FIELDS), 2)))


def _masks(rate: float, n: int, start: int = 0) -> np.ndarray:
    spec = CTRSpec(**(REFERENCE | {"bagging_rate": rate}))
    return np.stack([learner_mask(spec, s) for s in range(start, start + n)]).astype(float)


@pytest.mark.parametrize("rate", [0.3, 0.6, 0.9])
def test_overlap_probabilities_match_simulated_masks(rate):
    p1, p2 = inclusion(rate)
    m = _masks(rate, 600)
    a, b = m[0::2], m[1::2]  # 300 independent learner pairs
    pair_a = a[:, PAIRS[:, 0]] * a[:, PAIRS[:, 1]]
    pair_b = b[:, PAIRS[:, 0]] * b[:, PAIRS[:, 1]]
    # 300 pairs x 39 fields: SD of each frequency < 0.01; 0.025 is > 2.5 SD
    assert ((1 - a) * (1 - b)).mean() == pytest.approx((1 - p1) ** 2, abs=0.025)
    assert (a * b).mean() == pytest.approx(p1**2, abs=0.025)
    assert (a * b).sum(1).mean() == pytest.approx(p1 * p1 * N_FIELDS, rel=0.05)  # E|S1∩S2| = k²/F
    assert ((1 - pair_a) * (1 - pair_b)).mean() == pytest.approx((1 - p2) ** 2, abs=0.025)


@pytest.mark.parametrize("rate", [0.25, 0.5, 0.8])
def test_rho_form_matches_residuals_simulated_from_random_field_subsets(rate):
    A, B, C, V, H = 0.05, 0.08, 0.03, 0.04, 0.01
    rng = np.random.default_rng(0)
    n = 4000
    common = rng.normal(0, np.sqrt(A), n)
    signal = rng.normal(0, np.sqrt(B / N_FIELDS), (n, N_FIELDS))
    pair_signal = rng.normal(0, np.sqrt(C / len(PAIRS)), (n, len(PAIRS)))
    shared_error = rng.normal(0, np.sqrt(V / N_FIELDS), (n, N_FIELDS))

    def residual(mask: np.ndarray) -> np.ndarray:
        pair_kept = mask[PAIRS[:, 0]] * mask[PAIRS[:, 1]]
        return (common + signal @ (1 - mask) + pair_signal @ (1 - pair_kept) + shared_error @ mask
                + rng.normal(0, np.sqrt(H), n))

    masks = _masks(rate, 120, start=1000)
    eps = np.stack([residual(m) for m in masks])
    eps -= eps.mean(1, keepdims=True)
    var = float((eps**2).mean())
    cov = float(np.mean([(eps[i] * eps[i + 1]).mean() for i in range(0, len(eps), 2)]))
    theta = np.array([0.0, A, B, C, V, H])
    _, sigma2_form, cov_form = design_rows(rate) @ theta
    assert var == pytest.approx(sigma2_form, rel=0.05)
    assert cov / var == pytest.approx(cov_form / sigma2_form, abs=0.03)  # ρ(r)


def test_fit_recovers_the_predicted_curve_and_its_minimiser():
    truth = dict(zip(THETA, [0.001, 0.25, 0.15, 0.02, 0.05, 0.005], strict=True))
    theta = np.array(list(truth.values()))
    obs = []
    for rate in (0.25, 0.5, 0.75, 1.0):
        E, sigma2, cov = design_rows(rate) @ theta
        obs.append({"rate": rate, "E": E, "sigma2": sigma2, "rho": cov / sigma2})
    fit = fit_forms(obs)
    assert fit.rms < 1e-9
    true_fit = type(fit)(truth, N_FIELDS, fit.rates, 0.0)
    r_star, curve = optimal_rate(fit, M=8)
    r_true, curve_true = optimal_rate(true_fit, M=8)
    assert r_star == r_true
    assert np.allclose([c["ens"] for c in curve], [c["ens"] for c in curve_true], atol=1e-9)


def test_large_ensembles_keep_the_fraction_b_over_b_plus_v():
    """With no pair terms and seed noise, E_ens(∞; r) ∝ B(1−p)² + Vp², minimised at B/(B+V)."""
    B, V = 0.12, 0.04
    theta = dict(zip(THETA, [0.0, 0.1, B, 0.0, V, 0.0], strict=True))
    fit = type(fit_forms([{"rate": r, "E": 1, "sigma2": 1, "rho": 0.5} for r in (0.5, 1.0)]))(
        theta, N_FIELDS, (0.5, 1.0), 0.0)
    r_star, _ = optimal_rate(fit, M=10**6)
    assert r_star == pytest.approx(B / (B + V), abs=1 / N_FIELDS)


def test_fit_needs_two_rates():
    with pytest.raises(ValueError, match="2 distinct rates"):
        fit_forms([{"rate": 0.5, "E": 0.3, "sigma2": 0.3, "rho": 0.9}])
