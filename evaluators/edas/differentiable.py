r"""Strategy 2 of EDAS: per-field inclusion probabilities π ∈ [π_min, 1]^F by constrained gradient.

**Surrogate.** Learner l keeps field f with probability π_f, independently (``field_probs`` of
``spaces.ctr.CTRSpec``). The residual model of :mod:`evaluators.edas.closed_form`, with per-field
variances instead of field averages (lost signal b_f, shared estimation error v_f; pairwise
terms are left out), gives for independent Bernoulli masks

    σ²(π)  = A + H + Σ_f [b_f (1 − π_f) + v_f π_f]
    Cov(π) = A + Σ_f [b_f (1 − π_f)² + v_f π_f²]
    E(π)   = m + σ²(π),   ρ(π) = Cov(π) / σ²(π),   E_ens(M; π) = E − σ²(1 − ρ)(M − 1)/M.

Its coefficients are fitted (:func:`fit_surrogate`) from a pool of learners' residuals with
known masks s_l ∈ {0,1}^F: each learner's Brier error E_l = m + A + H + Σ b_f(1 − s_lf) +
Σ v_f s_lf, and for each pair (l, l') the mean variance and the covariance of their residuals
(``evaluators.stats.residual_stats``), σ²_ll' = A + H + Σ b_f(1 − s̄_f) + Σ v_f s̄_f with
s̄ = (s_l + s_l')/2, and Cov_ll' = A + Σ b_f (1 − s_lf)(1 − s_l'f) + Σ v_f s_lf s_l'f —
non-negative least squares with a ridge pulling b_f and v_f towards their field means.

**Constrained optimisation.** Minimise J(π) = E_ens(M; π) + κ·mean_f π_f (κ ≥ 0 prices the
fields each learner embeds) subject to the monotonic condition g(π) = E_ens(M; π) −
E_ens(M; π_old) ≤ 0, by gradient steps (Adam, projected onto [π_min, 1]) on the augmented
Lagrangian J + λg + (μ/2)·max(0, g)², with dual ascent λ ← max(0, λ + μ·g). Every step's π,
g, λ and J is logged; the answer is the feasible iterate (g ≤ 0) with the lowest J — π_old
itself is feasible, so one always exists.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from itertools import combinations

import numpy as np
import torch

from evaluators.results import predicted_ensemble_error
from evaluators.stats import brier, residual_stats

__all__ = ["FieldSurrogate", "fit_surrogate", "Step", "constrained_search"]


@dataclass(frozen=True)
class FieldSurrogate:
    """Coefficients of the per-field residual model (see the module doc)."""

    m: float
    A: float
    H: float
    b: np.ndarray  #: (F,) lost-signal variance per field
    v: np.ndarray  #: (F,) shared estimation-error variance per field

    def stats(self, pi: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(E, σ², ρ) at inclusion probabilities ``pi`` (F,), differentiable in ``pi``."""
        b = torch.as_tensor(self.b, dtype=pi.dtype)
        v = torch.as_tensor(self.v, dtype=pi.dtype)
        sigma2 = self.A + self.H + (b * (1 - pi) + v * pi).sum()
        cov = self.A + (b * (1 - pi) ** 2 + v * pi**2).sum()
        return self.m + sigma2, sigma2, cov / sigma2

    def ensemble_error(self, pi: torch.Tensor, M: int) -> torch.Tensor:
        """E_ens(M; π) (a 0-d tensor)."""
        return predicted_ensemble_error(*self.stats(pi), M)

    def as_dict(self) -> dict[str, float | list[float]]:
        return {"m": self.m, "A": self.A, "H": self.H, "b": self.b.tolist(), "v": self.v.tolist()}


def fit_surrogate(masks: np.ndarray, probs: np.ndarray, labels: np.ndarray,
                  ridge: float = 1.0) -> FieldSurrogate:
    """Fit the surrogate from P ≥ 3 learners: ``masks`` (P, F) bool, ``probs`` (P, N, K)."""
    from scipy.optimize import lsq_linear

    masks = np.asarray(masks, dtype=np.float64)
    P, F = masks.shape
    if P < 3 or probs.shape[0] != P:
        raise ValueError(f"need >= 3 learners with one mask each, got {P} masks, {probs.shape[0]} learners")
    rows, y = [], []

    def row(m: float, a: float, h: float, b: np.ndarray, v: np.ndarray) -> None:
        rows.append(np.concatenate([[m, a, h], b, v]))

    for l in range(P):
        row(1, 1, 1, 1 - masks[l], masks[l])
        y.append(brier(probs[l], labels))
    for i, j in combinations(range(P), 2):
        s = residual_stats(probs[[i, j]], labels)
        mean = (masks[i] + masks[j]) / 2
        row(0, 1, 1, 1 - mean, mean)
        y.append(s.sigma2)
        row(0, 1, 0, (1 - masks[i]) * (1 - masks[j]), masks[i] * masks[j])
        y.append(s.rho * s.sigma2)
    X, y = np.asarray(rows), np.asarray(y)
    scale = np.sqrt(ridge * len(y) / F)  # ridge: b_f − mean(b) and v_f − mean(v) towards 0
    centre = (np.eye(F) - 1.0 / F) * scale
    ridge_b, ridge_v = np.zeros((F, 3 + 2 * F)), np.zeros((F, 3 + 2 * F))
    ridge_b[:, 3:3 + F], ridge_v[:, 3 + F:] = centre, centre
    X_all = np.concatenate([X, ridge_b, ridge_v])
    y_all = np.concatenate([y, np.zeros(2 * F)])
    theta = lsq_linear(X_all, y_all, bounds=(0.0, np.inf)).x
    return FieldSurrogate(float(theta[0]), float(theta[1]), float(theta[2]),
                          theta[3:3 + F].copy(), theta[3 + F:].copy())


@dataclass(frozen=True)
class Step:
    """One logged optimisation step."""

    step: int
    pi: list[float]
    ens: float  #: surrogate E_ens(M; π)
    constraint: float  #: g(π) = E_ens(π) − E_ens(π_old); feasible iff ≤ 0
    objective: float  #: J(π) = E_ens + κ·mean π
    multiplier: float  #: λ after this step's dual update
    mean_pi: float


def constrained_search(surrogate: FieldSurrogate, pi_old: np.ndarray, M: int, *, kappa: float = 0.0,
                       steps: int = 200, lr: float = 0.02, mu: float = 200.0, pi_min: float = 0.05,
                       on_step: Callable[[Step], None] | None = None) -> tuple[np.ndarray, list[Step]]:
    """Minimise J(π) s.t. g(π) ≤ 0 from π_old (see the module doc); returns the best feasible
    π and every step (step 0 is π_old). ``mu``: penalty weight and dual step size."""
    if kappa < 0 or steps < 1 or not 0 < pi_min <= 1:
        raise ValueError(f"need kappa >= 0, steps >= 1, 0 < pi_min <= 1; got {kappa}, {steps}, {pi_min}")
    pi_old = np.asarray(pi_old, dtype=np.float64)
    if pi_old.min() < pi_min or pi_old.max() > 1:
        raise ValueError(f"pi_old must lie in [pi_min={pi_min}, 1], got [{pi_old.min()}, {pi_old.max()}]")
    pi = torch.tensor(pi_old, dtype=torch.float64, requires_grad=True)
    with torch.no_grad():
        target = float(surrogate.ensemble_error(pi, M))
    opt = torch.optim.Adam([pi], lr=lr)
    lam, log = 0.0, []

    def record(t: int) -> Step:
        with torch.no_grad():
            ens = float(surrogate.ensemble_error(pi, M))
            mean = float(pi.mean())
        step = Step(t, pi.detach().tolist(), ens, ens - target, ens + kappa * mean, lam, mean)
        log.append(step)
        if on_step is not None:
            on_step(step)
        return step

    record(0)
    for t in range(1, steps + 1):
        ens = surrogate.ensemble_error(pi, M)
        g = ens - target
        loss = ens + kappa * pi.mean() + lam * g + 0.5 * mu * torch.clamp(g, min=0) ** 2
        opt.zero_grad()
        loss.backward()
        opt.step()
        with torch.no_grad():
            pi.clamp_(pi_min, 1.0)
            g_new = float(surrogate.ensemble_error(pi, M)) - target
        lam = max(0.0, lam + mu * g_new)
        record(t)
    feasible = [s for s in log if s.constraint <= 0.0]
    best = min(feasible, key=lambda s: (s.objective, -s.step))
    return np.asarray(best.pi), log
