"""Residual statistics of L learners and the uncertainty of a predicted ensemble gain (numpy).

Symbols: for learner l = 1…L and validation sample n = 1…N, the residual is
ε_l(n) = p_l(x_n) − onehot(y_n) ∈ R^K (predicted class probabilities minus the label);
μ_l = mean_n ε_l(n).

* E   — mean single-learner Brier error: mean_l mean_n ‖ε_l(n)‖².
* σ²  — residual variance: mean_l mean_n ‖ε_l(n) − μ_l‖² (ddof 0).
* ρ   — residual correlation: c̄ / σ², where c̄ = mean over the L(L−1)/2 pairs i < j of
        mean_n ⟨ε_i(n) − μ_i, ε_j(n) − μ_j⟩.
* M   — ensemble size; E_ens(M) = E − σ²·(1−ρ)·(M−1)/M = E − (σ² − c̄)·(M−1)/M
        (:func:`evaluators.results.predicted_ensemble_error`).

All three are means of per-sample quantities and per-learner means, so a bootstrap over
samples is a matrix product (:func:`_moments`) and needs no Python loop over draws.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from scipy.optimize import brentq
from scipy.stats import norm

from evaluators.results import Stats

__all__ = ["residuals", "residual_stats", "bootstrap_stats", "GainEstimate", "gain_estimate",
           "seed_variance", "two_learner_phi", "pool_seed_variance", "z_for", "conditional_power", "brier",
           "ensemble_brier", "error01"]


def residuals(probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """ε = p − onehot(y); ``probs`` (L, N, K), ``labels`` (N,) → (L, N, K) float64."""
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim != 3 or probs.shape[1] != len(labels):
        raise ValueError(f"probs must have shape (L, N, K) with N={len(labels)}, got {probs.shape}")
    onehot = np.eye(probs.shape[2])[np.asarray(labels)]
    return probs - onehot[None]


def _moments(eps: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(E, σ², c̄) for each row of ``weights`` (B, N) (rows sum to 1) from eps (L, N, K), L ≥ 2."""
    L = eps.shape[0]
    sq = np.einsum("lnk,lnk->n", eps, eps) / L  # mean_l ‖ε_l(n)‖²
    total = eps.sum(axis=0)
    pair = (np.einsum("nk,nk->n", total, total) - L * sq) / (L * (L - 1))  # mean_{i≠j} ⟨ε_i, ε_j⟩
    mu = np.tensordot(weights, eps, axes=([1], [1]))  # (B, L, K), one BLAS product
    mu_sq = np.einsum("blk,blk->b", mu, mu) / L
    mu_tot = mu.sum(axis=1)
    mu_pair = (np.einsum("bk,bk->b", mu_tot, mu_tot) - L * mu_sq) / (L * (L - 1))
    E = weights @ sq
    return E, E - mu_sq, weights @ pair - mu_pair


def _stats(eps: np.ndarray) -> Stats:
    if eps.shape[0] < 2:
        raise ValueError(f"the statistics need at least 2 learners, got {eps.shape[0]}")
    n = eps.shape[1]
    E, s2, c = (float(v[0]) for v in _moments(eps, np.full((1, n), 1.0 / n)))
    return Stats(E=E, sigma2=s2, rho=c / s2 if s2 > 0 else 1.0)


def residual_stats(probs: np.ndarray, labels: np.ndarray) -> Stats:
    """E, σ² and ρ of L ≥ 2 learners; ``probs`` (L, N, K)."""
    return _stats(residuals(probs, labels))


@lru_cache(maxsize=8)
def _boot_weights(n: int, n_boot: int, seed: int) -> np.ndarray:
    """Bootstrap resampling weights (n_boot, n), rows summing to 1; cached (read-only)."""
    rng = np.random.default_rng(seed)
    weights = rng.multinomial(n, np.full(n, 1.0 / n), size=n_boot) / n
    weights.flags.writeable = False
    return weights


def bootstrap_stats(probs: np.ndarray, labels: np.ndarray, n_boot: int = 200, seed: int = 0
                    ) -> tuple[dict[str, tuple[float, float]], dict[str, float]]:
    """95 % percentile intervals and standard errors of E, σ², ρ over validation samples
    (the learners held fixed)."""
    eps = residuals(probs, labels)
    E, s2, c = _moments(eps, _boot_weights(eps.shape[1], n_boot, seed))
    draws = {"E": E, "sigma2": s2, "rho": np.where(s2 > 0, c / np.where(s2 > 0, s2, 1.0), 1.0)}
    ci = {k: (float(np.percentile(v, 2.5)), float(np.percentile(v, 97.5))) for k, v in draws.items()}
    se = {k: float(v.std(ddof=1)) for k, v in draws.items()}
    return ci, se


def _ens(eps: np.ndarray, M: int, weights: np.ndarray) -> np.ndarray:
    E, s2, c = _moments(eps, weights)
    return E - (s2 - c) * (M - 1) / M  # = predicted_ensemble_error(E, σ², c̄/σ², M), vectorised


def seed_variance(eps: np.ndarray, M: int) -> float | None:
    """Jackknife-over-learners variance of Ê_ens(M) from L ≥ 3 learners (None below 3).

    Delete-one-learner estimates Ê_(−l); Var_seed = (L−1)/L · Σ_l (Ê_(−l) − mean Ê_(−·))².
    It measures how much the estimate moves with the learners' seeds (initialisation and data
    order) on these validation samples. Ê_ens is a U-statistic over learners, for which the
    jackknife is consistent.
    """
    L, n = eps.shape[0], eps.shape[1]
    if L < 3:
        return None
    w = np.full((1, n), 1.0 / n)
    loo = np.array([_ens(np.delete(eps, l, axis=0), M, w)[0] for l in range(L)])
    return float((L - 1) / L * np.sum((loo - loo.mean()) ** 2))


def pool_seed_variance(items: Iterable[tuple[int, float]]) -> tuple[float, int] | None:
    """Run-level per-learner seed variance φ and its degrees of freedom ν from evaluations
    ``(L, Var_seed)`` with L ≥ 3: φ = Σ (L−1)·L·Var_seed / Σ (L−1), ν = Σ (L−1).

    Assumes the seed variance of Ê_ens scales as φ/L (a mean over learners; exact for E and σ²,
    leading-order for the pair term) and that φ is shared by the run's architectures (they are
    neighbours in one space on one task). None when no evaluation has three learners.
    """
    num = den = 0
    for L, var in items:
        if L >= 3 and var is not None:
            num += (L - 1) * L * var
            den += L - 1
    return (num / den, den) if den else None


def _gauss(x: np.ndarray, var: float) -> np.ndarray:
    return np.exp(-0.5 * x * x / var) / np.sqrt(2.0 * np.pi * var)


def _stays_inside(c: float, t: np.ndarray, grid: int = 401) -> float:
    """P(|W(t_k)| ≤ c·√t_k for every k) for a standard Brownian motion W at increasing times t,
    by propagating the density of W on a grid through the Gaussian increments (Armitage,
    McPherson & Rowe, 1969): deterministic; at 401 points z is within 1e-4 of the published
    constants."""
    x = np.linspace(-c * np.sqrt(t[0]), c * np.sqrt(t[0]), grid)
    f = _gauss(x, t[0])
    w = np.full(grid, 1.0)
    w[[0, -1]] = 0.5  # trapezoid weights, times the step below
    for prev, now in zip(t[:-1], t[1:], strict=True):
        y = np.linspace(-c * np.sqrt(now), c * np.sqrt(now), grid)
        f = _gauss(y[:, None] - x[None, :], now - prev) @ (w * f) * (x[1] - x[0])
        x = y
    return float(w @ f * (x[1] - x[0]))


@lru_cache(maxsize=64)
def _boundary(confidence: float, info: tuple[float, ...]) -> float:
    alpha, t = 1.0 - confidence, np.asarray(info, dtype=np.float64)
    if len(t) == 1:
        return float(norm.ppf(1.0 - alpha / 2))
    hi = float(norm.ppf(1.0 - alpha / (2 * len(t))))  # the Bonferroni split: always at or above it
    return float(brentq(lambda c: 1.0 - _stays_inside(c, t) - alpha, norm.ppf(1.0 - alpha / 2), hi,
                        xtol=1e-5))


def z_for(confidence: float, looks: int | Sequence[float] = 1) -> float:
    """The two-sided bound z of a sequential rule that looks at the gain ``looks`` times: the
    chance that *any* look calls a gain of sign opposite to the truth confident stays
    ≤ 1 − ``confidence`` (group-sequential, constant boundary: Pocock, 1977).

    ``looks``: the number of looks, equally spaced, or the information at each look (e.g. the
    learner counts of :func:`agent.rule.learner_schedule`, since the seed part of the variance
    falls as 1/L). Model: the z-statistics at the looks are those of a Brownian motion,
    Z_k = W(t_k)/√t_k, so Corr(Z_j, Z_k) = √(t_j/t_k); z solves P(max_k |Z_k| > z) = 1 −
    ``confidence`` (one look: the normal quantile, 1.96 at 0.95; five equal looks: 2.413, the
    published Pocock constant). It is lower than the Bonferroni split (2.576 for five looks)
    because the looks share their learners. Conservative here: the looks also share the
    validation samples, which correlates them more. ``confidence`` 0 gives z = 0."""
    if not 0.0 <= confidence < 1.0:
        raise ValueError(f"confidence must be in [0, 1), got {confidence}")
    info = tuple(float(v) for v in (range(1, max(1, looks) + 1) if isinstance(looks, int)
                                    else looks))
    if not info or any(b <= a for a, b in zip(info, info[1:], strict=False)) or info[0] <= 0:
        raise ValueError(f"looks must be a positive count or increasing information, got {looks!r}")
    if confidence == 0.0:
        return 0.0
    return _boundary(confidence, info)


@dataclass(frozen=True)
class GainEstimate:
    """Predicted gain g = E_ens(π_old) − E_ens(π) at M (> 0: the candidate's ensemble is
    better) and its standard error, split into the validation-sample and seed parts."""

    gain: float
    se_sample: float
    se_seed: float | None  # None: no seed information at all (two learners and an empty pool)
    learners_new: int
    learners_old: int
    seed_source: str  # "own", "own+pooled" or "none", per side joined by "/"

    @property
    def se_total(self) -> float:
        return float(np.hypot(self.se_sample, self.se_seed or 0.0))


def two_learner_phi(eps: np.ndarray) -> float:
    """A one-degree-of-freedom estimate of the per-learner seed variance φ from L = 2 learners,
    where the jackknife needs three: (e₁ − e₂)²/2, eᵢ learner i's Brier error on the validation
    samples. It reads φ of E_ens(M) as the seed variance of one learner's error, which is how
    the two compare on real learners: on the rule-validity benchmark's 16 cells (16 learners
    each) φ / Var(eᵢ) has a median of 1.0 on Fashion-MNIST and 0.8 on MNIST-1D (log-SD 0.32 and
    0.35), so it errs on the side of a larger SE there."""
    e = np.einsum("lnk,lnk->l", eps, eps) / eps.shape[1]
    return float((e[0] - e[1]) ** 2 / 2)


def _side_seed_var(eps: np.ndarray, M: int, pool: tuple[float, int] | None
                   ) -> tuple[float | None, str]:
    """Var_seed of one side's Ê_ens(M): its own estimate (the jackknife, df L−1; with two
    learners :func:`two_learner_phi`/2, df 1) and the pool's φ/L (df ν), combined with weights by
    degrees of freedom (partial pooling); the jackknife alone without a pool. Two learners and
    no pool: unknown (one degree of freedom is too few to stand alone)."""
    L = eps.shape[0]
    own = seed_variance(eps, M)
    if own is None and pool is None:
        return None, "none"
    if pool is None:
        return own, "own"
    pooled = pool[0] / L
    nu_own, nu_pool = L - 1, pool[1]
    if own is None:
        own = two_learner_phi(eps) / L
    return (nu_own * own + nu_pool * pooled) / (nu_own + nu_pool), "own+pooled"


def gain_estimate(probs_new: np.ndarray, probs_old: np.ndarray, labels: np.ndarray, M: int, *,
                  pool: tuple[float, int] | None = None, n_boot: int = 300,
                  seed: int = 0) -> GainEstimate:
    """Predicted gain E_ens(π_old) − E_ens(π) at ensemble size M with its standard error.

    Estimator, with L_new and L_old learners evaluated on the same N validation samples:

    * gain ĝ = Ê_ens,old(M) − Ê_ens,new(M), each side from all of its learners.
    * sample part: SD of ĝ over a paired bootstrap of the validation samples (one multinomial
      resample of the indices serves both sides, so the per-sample difficulty they share cancels),
      learners held fixed.
    * seed part: Var_seed,new + Var_seed,old, each side's from its own learners by the jackknife
      (:func:`seed_variance`, L ≥ 3; with L = 2 the two learners' errors,
      :func:`two_learner_phi`, one degree of freedom) partially pooled with the run-level φ/L
      (:func:`pool_seed_variance`); with two learners and no pool the seed part is unknown
      (``se_seed`` None) and only the sample part is reported.
    * SE_total = √(SE_sample² + Var_seed,new + Var_seed,old).

    Assumptions: the two parts are independent (the bootstrap conditions on the learners, the
    jackknife on the samples; the sum is slightly conservative); the two sides' seed errors are
    independent (both use the same seed numbers, whose shared data order can only correlate them
    positively, so ignoring it overstates the SE); ĝ is roughly normal, so ĝ ± z·SE_total is an
    interval for the expected gain over seeds and samples.
    """
    eps_new, eps_old = residuals(probs_new, labels), residuals(probs_old, labels)
    n = eps_new.shape[1]
    w_all = np.full((1, n), 1.0 / n)
    gain = float(_ens(eps_old, M, w_all)[0] - _ens(eps_new, M, w_all)[0])
    w = _boot_weights(n, n_boot, seed)
    draws = _ens(eps_old, M, w) - _ens(eps_new, M, w)
    var_new, src_new = _side_seed_var(eps_new, M, pool)
    var_old, src_old = _side_seed_var(eps_old, M, pool)
    se_seed = (None if var_new is None or var_old is None
               else float(np.sqrt(max(0.0, var_new) + max(0.0, var_old))))
    return GainEstimate(gain=gain, se_sample=float(draws.std(ddof=1)), se_seed=se_seed,
                        learners_new=eps_new.shape[0], learners_old=eps_old.shape[0],
                        seed_source=f"{src_new}/{src_old}")


def conditional_power(estimate: GainEstimate, max_learners: int, z: float,
                      z_reject: float | None = None) -> float:
    """Chance that the gain clears the bound (ĝ > z·SE or ĝ < −z_r·SE) at the last look, with
    ``max_learners`` on the candidate, if the true gain is the one estimated now (the "current
    trend" of stochastic curtailment: Lan, Simon & Halperin, 1982).

    Model, with L = learners now and L_max = ``max_learners``: the validation samples are the
    same at every look, so the sample part of the error is already in ĝ and stays; each new
    learner adds its own seed error, of variance φ = SE_seed²·L. The last look's estimate is
    then ĝ_max ~ N(ĝ, φ·(L_max − L)/L_max²) and its SE_max² = SE_sample² + φ/L_max. Treating the
    whole seed part as the candidate's is optimistic when the baseline already has more
    learners, so the chance is if anything overstated (a futility stop is then rarer). Returns
    1.0 when the seed part is unknown (no basis to stop) and 0 or 1 when no learner is left.
    """
    z_r = z if z_reject is None else z_reject
    g, se = estimate.gain, estimate.se_total
    if estimate.se_seed is None or se <= 0:
        return 1.0
    L, top = estimate.learners_new, max_learners
    if top <= L:
        return float(g > z * se or g < -z_r * se)
    phi = estimate.se_seed ** 2 * L
    se_max = np.sqrt(estimate.se_sample ** 2 + phi / top)
    sd = np.sqrt(phi * (top - L)) / top
    return float(norm.sf((z * se_max - g) / sd) + norm.cdf((-z_r * se_max - g) / sd))


def brier(probs: np.ndarray, labels: np.ndarray) -> float:
    """Brier error of one probability table (N, K): mean_n ‖p(x_n) − onehot(y_n)‖²."""
    return float(np.mean(np.sum(residuals(np.asarray(probs)[None], labels)[0] ** 2, axis=1)))


def ensemble_brier(probs: np.ndarray, labels: np.ndarray) -> float:
    """Brier error of the averaged probabilities of L learners, probs (L, N, K)."""
    return brier(np.asarray(probs, dtype=np.float64).mean(axis=0), labels)


def error01(probs: np.ndarray, labels: np.ndarray) -> float:
    """0-1 error of one probability table (N, K)."""
    return float(np.mean(np.argmax(probs, axis=1) != np.asarray(labels)))
