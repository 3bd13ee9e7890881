r"""Strategy 1 of EDAS: the feature-bagging rate r in closed form.

Each learner keeps k = k(r) of the F fields, uniformly without replacement, independently of the
other learners (``spaces.ctr.kept_fields``). For one learner,

    p₁(r) = P(field f kept) = k / F,        p₂(r) = P(pair {f, g} kept) = k(k − 1) / (F(F − 1)),

and since two learners draw independently, a field is missed by both with probability (1 − p₁)²,
kept by both with p₁², and a pair is unusable by both with (1 − p₂)². (Expected overlap of two
subsets: E|S₁ ∩ S₂| = k²/F = p₁·k — a learner shares a fraction p₁ ≈ r of its fields.)

**Residual model.** Write a learner's residual on sample x as a sum of uncorrelated, zero-mean
parts (plus a constant μ, the mean residual):

    ε_S(x) = μ + c(x) + Σ_f z_f(x)·[f ∉ S] + Σ_{f<g} z_fg(x)·[{f,g} ⊄ S] + Σ_f n_f(x)·[f ∈ S] + η(x)

c: what no field explains (variance A); z_f, z_fg: the signal of a field or of a pairwise
interaction that a learner without it cannot use (total variances B and C); n_f: the estimation
error a learner makes on field f's parameters — it comes from the shared training data, so two
learners that both use f share it (total variance V); η: seed noise (init, data order),
independent between learners (variance H). Averaging over fields (the subset is uniform):

    σ²(r)  = A + B(1 − p₁) + C(1 − p₂) + V·p₁ + H                 (residual variance)
    Cov(r) = A + B(1 − p₁)² + C(1 − p₂)² + V·p₁²                   (two learners' covariance)
    ρ(r)   = Cov(r) / σ²(r)
    E(r)   = m + σ²(r),  m = ‖μ‖² (the Brier error is variance plus squared mean residual)

All three are linear in θ = (m, A, B, C, V, H) ≥ 0, so dual-learner evaluations (E, σ², ρσ²) at a
few rates fit θ by non-negative least squares. The predicted ensemble error is the rule's
E_ens(M; r) = E − σ²(1 − ρ)(M − 1)/M = m + Cov + (σ² − Cov)/M; with C = 0 and M → ∞ it is
minimised at p₁* = B/(B + V): bagging pays exactly when shared estimation error V competes with
lost signal B. r* minimises E_ens(M; r) over the F attainable rates k/F (a 1-D search).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from evaluators.results import predicted_ensemble_error
from spaces.ctr import N_FIELDS, kept_fields

__all__ = ["THETA", "inclusion", "design_rows", "BaggingFit", "fit_forms", "optimal_rate"]

#: parameter names of θ, in the order of :func:`design_rows`' columns
THETA = ("m", "A", "B", "C", "V", "H")


def inclusion(rate: float, n_fields: int = N_FIELDS) -> tuple[float, float]:
    """(p₁, p₂): probability that one learner keeps a given field / a given pair of fields."""
    k = kept_fields(rate, n_fields)
    return k / n_fields, k * (k - 1) / (n_fields * (n_fields - 1))


def design_rows(rate: float, n_fields: int = N_FIELDS) -> np.ndarray:
    """Rows of E, σ² and Cov = ρσ² as linear functions of θ (3, 6)."""
    p1, p2 = inclusion(rate, n_fields)
    sigma2 = np.array([0.0, 1.0, 1 - p1, 1 - p2, p1, 1.0])
    cov = np.array([0.0, 1.0, (1 - p1) ** 2, (1 - p2) ** 2, p1**2, 0.0])
    E = sigma2 + np.array([1.0, 0, 0, 0, 0, 0])
    return np.stack([E, sigma2, cov])


@dataclass(frozen=True)
class BaggingFit:
    """Fitted θ (see the module doc) and what the fit saw."""

    theta: dict[str, float]
    n_fields: int
    rates: tuple[float, ...]
    rms: float  #: root-mean-square misfit over the 3 × len(rates) observations

    def stats(self, rate: float) -> tuple[float, float, float]:
        """(E, σ², ρ) predicted at ``rate``."""
        E, sigma2, cov = design_rows(rate, self.n_fields) @ np.array([self.theta[k] for k in THETA])
        return float(E), float(sigma2), float(cov / sigma2) if sigma2 > 0 else 1.0

    def ensemble_error(self, rate: float, M: int) -> float:
        """Predicted E_ens(M; r)."""
        return predicted_ensemble_error(*self.stats(rate), M)


def fit_forms(observations: list[dict[str, float]], n_fields: int = N_FIELDS) -> BaggingFit:
    """Fit θ ≥ 0 to dual-learner observations ``{"rate", "E", "sigma2", "rho"}`` (at least two
    distinct rates; four give 12 equations for 6 unknowns)."""
    from scipy.optimize import nnls

    rates = sorted({float(o["rate"]) for o in observations})
    if len(rates) < 2:
        raise ValueError(f"need dual evaluations at >= 2 distinct rates, got {rates}")
    X = np.concatenate([design_rows(o["rate"], n_fields) for o in observations])
    y = np.concatenate([[o["E"], o["sigma2"], o["rho"] * o["sigma2"]] for o in observations])
    theta, _ = nnls(X, y)
    rms = float(np.sqrt(np.mean((X @ theta - y) ** 2)))
    return BaggingFit(dict(zip(THETA, map(float, theta), strict=True)), n_fields, tuple(rates), rms)


def optimal_rate(fit: BaggingFit, M: int) -> tuple[float, list[dict[str, float]]]:
    """r* = argmin over r = k/F (k = 1…F) of the predicted E_ens(M; r), and the whole predicted
    curve ``[{"rate", "E", "sigma2", "rho", "ens"}]`` (ties go to the larger r)."""
    curve = []
    for k in range(1, fit.n_fields + 1):
        rate = k / fit.n_fields
        E, sigma2, rho = fit.stats(rate)
        curve.append({"rate": rate, "E": E, "sigma2": sigma2, "rho": rho,
                      "ens": predicted_ensemble_error(E, sigma2, rho, M)})
    best = min(reversed(curve), key=lambda c: c["ens"])
    return best["rate"], curve
